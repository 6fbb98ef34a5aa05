"""Rule families that need code, one module per family of Haiku constructs.

Each module holds one mixin per target (`Linen…`, `Nnx…`) that the target's converter
(`haiku2flax.targets.linen` / `.nnx`) is composed of. A mixin's `leave_*` hooks handle their own
constructs and hand everything else on with `super()`, so families stay independent. Linen mixins
call `self.mark_builds_layer()` when they build a layer inline (the method then gets `@nn.compact`);
NNX mixins of the method rewriter use its hoisting API (see `NnxMethodRewriter`).
"""

import importlib
import pkgutil


def load_all() -> None:
    """Import every family module (each registers its rule ids)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
