"""Quality: how close each pruned variant stays to its base model, and the release's floor."""
