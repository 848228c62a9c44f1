"""Training the defocus classifier: optimisers, sharded steps, checkpoints and the loop."""
