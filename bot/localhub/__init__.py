"""A local Hub-compatible server, for the demo, tests and benchmarks (nothing else in hubbot
imports it): the part of the Hugging Face Hub's HTTP API that `HfApi`, `hf_hub_download` and
transformers use for model repos. `server` is the HTTP side (`HubServer`, and `serve` for
`hubbot hub serve`: connections, request bodies, admin endpoints) and `faults` the injected
faults and request counts per route key; `routes` maps a method and path to a handler, and
the handlers live in one module per resource: `repos` (whoami, create/delete, settings,
info, listing), `trees` (tree, paths-info), `lfs` (preupload, LFS batch/upload/verify),
`commits` (the NDJSON commit, the history), `refs` (branches, tags), `resolve` (downloads,
byte ranges), `cards` (card metadata, validate-yaml), `collections`, and `browse` with
`pages` (the HTML front page and repo pages). `access` decides who a request acts as and
what it may read or write; `http` holds `Request`, `Reply` and `StatusError` and turns every
refusal into an answer in one place. Under them lies the on-disk store, which knows nothing
of HTTP: `store` (repos, commits, refs, collections), `blobs` (content-addressed file
contents), `records` (the stored values and their git ids), `rules` (valid names and paths,
which files go to LFS) and `errors` (what the store refuses, as `StoreError` kinds).
"""
