"""Expert selection: statistics sources, strategies and routing coverage."""
