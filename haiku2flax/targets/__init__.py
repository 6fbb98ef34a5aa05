"""One module per Flax target; each turns the Haiku reading of a file into that target's code.

HK001 module-class: `class M(hk.Module)` becomes `nn.Module` (a dataclass whose fields are the
constructor's arguments, with `@nn.compact` on methods that build layers inline and `setup()` for
submodules built in `__init__`) or `nnx.Module` (layers built in `__init__`, named the way Haiku
names them, with input sizes inferred by dataflow and `rngs: nnx.Rngs` threaded through). In Linen a
field keeps its argument's raw value: what `__init__` derives from it (`self.units = units + [1]`) is
set in `setup()` as `self._units`, read under that name by every method, and an attribute named like
the Module API (`self.scope`, `self.name`...) is renamed the same way (`haiku2flax/codemods/fields.py`).

HK002 layer: every Haiku layer in the rule tables (`rules/*.toml`) becomes its Flax counterpart with
arguments renamed and Haiku's defaults made explicit where Flax's differ; the same table entries say
how the weights convert. A call the table cannot express faithfully is left with a TODO.
"""

from ..engine.registry import Status, register

RULE_MODULE = register("HK001", "module-class", Status.CONVERTED, "hk.Module subclasses -> nn.Module / nnx.Module", __name__, apis=("Module",))
RULE_LAYER = register(
    "HK002", "layer", Status.CONVERTED, "table-driven layers (rules/*.toml): hk.Linear -> nn.Dense / nnx.Linear, ...", __name__
)
