"""A file converts the same whatever was converted before it in the process (`migrate -j` workers,
pre-commit, notebooks convert many files each).

CPython hands the address of a freed object, and so its `id()`, to the next object of the same size: a
table keyed by `id(node)` that outlives its node answers for another node, and whether it does depends
on the heap that earlier files left. `ReusedIds` makes that reuse happen every time, so a lookup by a
dead node's id shows in the output whatever the heap looks like.
"""

from __future__ import annotations

import gc
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import haiku2flax
from haiku2flax.engine import convert_source
from haiku2flax.engine.pipeline import TARGETS
from haiku2flax.targets import linen, nnx  # noqa: F401  # imported before `reused_ids` patches the package

from generated_programs.generator import generate

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_SOURCES = sorted(FIXTURES.glob("*/*/haiku.py"))
GENERATED = 30  # generated programs converted with the fixtures

# The shape of a message-passing layer that lost its last line: layers stored and called later in a
# branch (their lines move to `__init__` and are dropped), then a line of the enclosing block.
GATED = textwrap.dedent(
    """\
    import haiku as hk
    import jax


    class Gated(hk.Module):
        def __init__(self, out_size, gated=True, name=None):
            super().__init__(name=name)
            self.out_size = out_size
            self.gated = gated

        def __call__(self, z, msgs):
            ret = hk.Linear(self.out_size)(z)
            if self.gated:
                gate1 = hk.Linear(self.out_size)
                gate2 = hk.Linear(self.out_size)
                gate = jax.nn.sigmoid(gate1(z) + gate2(msgs))
                ret = ret * gate
            total = ret.sum()
            return ret, total
    """
)


class ReusedIds:
    """An `id` that gives a dead object's number to the next object of its type asked about, as CPython's
    allocator gives a freed address to the next object of its size. It holds each object it numbered
    and counts it dead once nothing else refers to it."""

    def __init__(self) -> None:
        self._held: dict[int, object] = {-1: object()}  # number -> object
        self._numbers: dict[int, int] = {}  # real id -> number
        self._free: dict[type, list[int]] = {}  # the numbers of dead objects, by type
        self._issued = 0
        (self._alone,) = self._counts().values()  # the count of an object only this table holds
        del self._held[-1]

    def _counts(self) -> dict[int, int]:
        return {number: sys.getrefcount(held) for number, held in list(self._held.items())}

    def __call__(self, obj: object) -> int:
        number = self._numbers.get(id(obj))  # an object held here is alive: its address is not reused
        if number is None:
            self._collect_dead()
            free = self._free.get(type(obj))
            number = free.pop() if free else self._issued
            self._issued += not free
            self._numbers[id(obj)], self._held[number] = number, obj
        return number

    def _collect_dead(self) -> None:
        for number, count in self._counts().items():
            if count <= self._alone:
                dead = self._held.pop(number)
                del self._numbers[id(dead)]
                self._free.setdefault(type(dead), []).append(number)


@pytest.fixture
def reused_ids(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Every module of the package sees `ReusedIds` as `id`; calling the fixture starts a new one (a
    smaller table to scan for the dead)."""

    def start() -> None:
        reused = ReusedIds()
        for name, module in list(sys.modules.items()):
            if name.startswith(f"{haiku2flax.__name__}."):
                monkeypatch.setattr(module, "id", reused, raising=False)

    start()
    return start


@pytest.mark.parametrize("target", TARGETS)
def test_dropped_lines_keep_the_lines_after_them(target: str, reused_ids: Callable[[], None]) -> None:
    code = convert_source(GATED, target).code
    assert "total = ret.sum()" in code
    assert "return ret, total" in code


def _converts_to_golden(path: Path, target: str, reused_ids: Callable[[], None]) -> bool:
    reused_ids()
    return convert_source(path.read_text(encoding="utf-8"), target).code == (path.parent / f"{target}.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("target", TARGETS)
def test_reused_ids_change_no_fixture(target: str, reused_ids: Callable[[], None]) -> None:
    changed = [str(path.parent.relative_to(FIXTURES)) for path in FIXTURE_SOURCES if not _converts_to_golden(path, target, reused_ids)]
    assert not changed


@pytest.mark.parametrize("target", TARGETS)
def test_order_of_files_changes_nothing(target: str) -> None:
    sources = [path.read_text(encoding="utf-8") for path in FIXTURE_SOURCES]
    sources += [GATED, *(generate(seed).source for seed in range(GENERATED))]
    forward = [convert_source(source, target).code for source in sources]
    gc.collect()
    backward = [convert_source(source, target).code for source in reversed(sources)][::-1]
    assert forward == backward
