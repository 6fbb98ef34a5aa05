"""Rule families that need code, one module per family of Haiku constructs.

Each module holds one mixin per target (`Linen…`, `Nnx…`) that the target's converter
(`haiku2flax.targets.linen` / `.nnx`) is composed of. A mixin's `leave_*` hooks handle their own
constructs and hand everything else on with `super()`, so families stay independent.
"""
