"""One module per Flax target; each turns the Haiku reading of a file into that target's code."""
