"""Differential testing: random Haiku programs from a seed, each checked against both targets by `verify`.

`generator` writes the programs (with the entry, inputs and call arguments `verify` needs), `oracle`
decides per program and target whether the migration is equivalent, honest about what it could not
convert (a TODO at the failing statement), or a violation, and `shrink` reduces a violating program
to a small one that still shows the same cause, ready to become a fixture.
"""
