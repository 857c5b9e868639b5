"""Training: state, sharded update step, loop and checkpoints."""
