"""hubbot's Hub client: what a repo on the Hub holds, what must change in it, and the one
commit that changes it, through `huggingface_hub`'s `HfApi` against any Hub endpoint.
`remote` reads a repo's state (head commit, files, the `hubbot.json` it holds); `plan`
compares a staged folder with that state and decides the action (create, rebuild, card-only,
no-op) and the files to upload or delete; `publish` makes that one commit, guarded by its
parent commit, and regenerates cards; `retry` runs every Hub call with retries and backoff
and turns the client's exceptions into hubbot's `HubError(repo_id, message)` kinds;
`download` fetches a base model's files; `clients` points huggingface_hub and transformers
at one endpoint for a while (the demo, tests, benchmarks). The local Hub-compatible server
that all of this is tested against is its own package, `bot.localhub`.
"""
