"""The equivalence harness and parameter conversion: the only part of haiku2flax that imports jax."""
