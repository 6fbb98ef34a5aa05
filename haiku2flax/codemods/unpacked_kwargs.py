"""Keywords a module class of the file passes on through its `**kwargs` to a table layer take the layer's
Flax names where the class is built (Linen): `Block(4, w_init=hk.initializers.Constant(0.5))` for a
`hk.Linear(size, **linear_kwargs)` inside `Block` becomes `Block(4, kernel_init=nn.initializers.constant(0.5))`
(Linen then gathers it into the class's `linear_kwargs` field), and the layer's call forwards them as they are.

Why at the construction: that is where the keys are written, so the Flax layer receives Flax names
without a translation at run time; the keys, and which layers receive them, are read by `engine/unpacked.py`.
A value the table cannot convert leaves a TODO at the construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from ..engine.calls import Unconvertible, code, convert_argument
from ..engine.unpacked import UNPACKED, Renamed
from ..targets import RULE_LAYER
from .interfaces import LINEN_NODES, LinenMethod


def _flax_keywords(room: LinenMethod, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    unpacked = room.ctx.fact(UNPACKED)
    built = original.func.value if isinstance(original.func, cst.Name) else None
    renames = unpacked.renames.get(built or "")
    if not renames or built is None:
        return None
    try:
        args = _renamed(updated.args, renames, room)
        gathered = [a for a in args if a.keyword is not None and a.keyword.value == unpacked.stars[built] and isinstance(a.value, cst.Call)]
        for arg in gathered:  # Linen: `Block(4, linear_kwargs=FrozenDict(with_bias=False))`
            assert isinstance(arg.value, cst.Call)  # the filter above
            args[args.index(arg)] = arg.with_changes(value=arg.value.with_changes(args=_renamed(arg.value.args, renames, room)))
    except Unconvertible as reason:
        room.todo(original, RULE_LAYER, str(reason))
        return None
    if all(a is b for a, b in zip(args, updated.args)):
        return None
    room.converted(original, RULE_LAYER, f"{code(original.func)}(...): the keywords it passes on take their Flax names")
    return updated.with_changes(args=args)


def _renamed(args: Sequence[cst.Arg], renames: dict[str, Renamed], room: LinenMethod) -> list[cst.Arg]:
    """`args` with the renamed keywords under their Flax names and values. Raises Unconvertible."""
    result = list(args)
    for index, arg in enumerate(result):
        renamed = renames.get(arg.keyword.value) if arg.keyword is not None else None
        if renamed is None or arg.keyword is None:
            continue
        try:
            value = convert_argument(arg.keyword.value, arg.value, renamed.construct, room.ctx)
        except Unconvertible as reason:
            raise Unconvertible(f"`{arg.keyword.value}` reaches `{renamed.construct.display}`: {reason}") from None
        result[index] = arg.with_changes(keyword=cst.Name(renamed.flax_name), value=value)
    return result


LINEN_NODES.on_leave(cst.Call, rule=RULE_LAYER, after=True)(_flax_keywords)  # after Linen gathers them into the `**kwargs` field
