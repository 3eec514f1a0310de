"""hubbot: publish families of pruned Mixture-of-Experts models to the Hugging Face Hub.

The modules follow the pipeline, and imports point one way down it (tests/test_layering.py
checks that no import, lazy or not, closes a circle): `manifest` (schema, checks, variants)
-> `selection` (a `Selector` per release gives each variant's `SelectionRecord`) -> `prune`
(a `PrunedModel` from a typed `Origin`) -> `examples` (an `ExampleRun`) -> `quality` (the
figures) -> `build` (a staged repo folder and the one `hubbot.json` written from those
values; `desired` is what a repo should hold, `base` fetches the base checkpoint) ->
`hub.plan` (the `Action` a repo needs) -> `release` and `hub.publish` (one commit per
variant). `overview` turns plans into the tables and CI matrices of `hubbot plan` and
`hubbot matrix`; `cli` is the commands; `demo` alone uses the local Hub and the fixtures.
"""

__version__ = "0.1.0"
