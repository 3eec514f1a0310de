"""Everything that knows the Hub: remote state, plan, publish, and a local Hub-compatible server."""
