"""hubbot: publish families of pruned Mixture-of-Experts models to the Hugging Face Hub."""

__version__ = "0.1.0"
