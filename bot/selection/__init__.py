"""Expert selection, the stage after the manifest: which experts each variant keeps.

`spec` defines the manifest blocks this stage reads (`statistics`, `selection`);
`statistics` holds the per-layer routing counts (`ExpertStatistics`) read from a file, the
packed fingerprints (`fingerprints`) or measured on the base model (`calibrate`, the only
module that needs torch); `strategies` turns scores into each layer's final order;
`coverage` measures the routing a kept set still serves; `select.Selector` ties them
together per release and returns a `SelectionRecord` per variant; `check` is what manifest
validation asks of a statistics source. Nothing here imports the manifest or later stages.
"""
