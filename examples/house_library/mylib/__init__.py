"""A house library wrapping Haiku: the kind of code `--rules` tables let haiku2flax convert."""
