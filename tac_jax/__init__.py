"""tac_jax: Total Activation Classifiers in JAX/Flax."""
