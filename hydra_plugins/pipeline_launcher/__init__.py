"""The pipeline's Hydra plugins: the vectorized launcher."""
