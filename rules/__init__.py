"""Declarative rule tables (TOML), shipped inside the wheel as `haiku2flax.tables`."""
