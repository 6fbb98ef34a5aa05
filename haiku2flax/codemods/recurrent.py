"""Haiku's recurrent cores and unrolls -> Flax cells under `nn.RNN` / `nnx.RNN`.

What it converts, for a core built in a method and used there (`core = hk.LSTM(H)`):
- `hk.LSTM(H)` -> `nn.LSTMCell(H)` / `nnx.LSTMCell(din, H, rngs=rngs)`; `hk.VanillaRNN(H)` ->
  `nn.SimpleCell(H, activation_fn=nn.relu)` (Haiku uses relu, Flax defaults to tanh); `hk.GRU(H)` ->
  `HaikuGRUCell`, a small cell defined once in the file with Haiku's equations and parameters (Flax's
  GRU cells apply the reset gate after the hidden matmul: no weight mapping reproduces Haiku's);
  `hk.DeepRNN([core, fn, core])` (unrolled) -> `nn.Sequential` of one `nn.RNN` per core, layer by layer.
- `outs, state = hk.dynamic_unroll(core, xs, core.initial_state(B))` (or `hk.static_unroll`) ->
  `state, outs = nn.RNN(core, time_major=True, return_carry=True)(xs)`: Haiku is time-major by default
  and returns `(outputs, state)`, Flax is batch-major and returns `(carry, outputs)`. Haiku's zero
  initial state is Flax's default carry, so it is dropped; another one is passed as `initial_carry=`.
- `out, state = core(x, prev)` -> `state, out = core(prev, x)` (Flax cells take and return the carry
  first); `core.initial_state(B)` -> `core.initialize_carry(key, input_shape)` (zeros in both).
- `hk.LSTMState(hidden=h, cell=c)` -> `(c, h)`, and `state.hidden` / `state.cell` -> `state[1]` /
  `state[0]`: Flax's LSTM carry is the tuple `(c, h)`.

The weights follow the tables (`rules/recurrent.toml`): Haiku's LSTM Linear on [x, h] (gate columns
i, g, f, o, +1 on the forget gate inside the cell) splits into Flax's per-gate kernels with the +1 moved
into the forget bias; VanillaRNN's two biases add into SimpleCell's one (same function; their sum
trains twice as fast under SGD, which HK400 warns about).

Left with a TODO, with why: a user `hk.RNNCore` subclass (HK403: Flax cells take `(carry, inputs)` and
return `(carry, output)`, the opposite order, and need `initialize_carry`), and a core used where the
rule cannot follow it (HK401: passed on, kept on `self`, unrolled and stepped, `reverse=`...).

Example (Linen)::

    core = hk.LSTM(64)                              core = nn.LSTMCell(64)
    outs, _ = hk.dynamic_unroll(                    outs = nn.RNN(core, time_major=True)(xs)
        core, xs, core.initial_state(xs.shape[1]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.calls import BoundCall, Unconvertible, as_tuple, code, convert_construct_call, keyword_arg, literal
from ..engine.context import Context, FileFact, attr, rename_namespace
from ..engine.names import ImportedNames, dotted_name
from ..engine.registry import Status, register
from ..engine.tables import Tables
from ..engine.walk import descendants
from .interfaces import (
    LINEN_CALLS, LINEN_NODES, NNX_FILE_NODES, NNX_NODES, CallSite, FileRoom, LinenMethod, MethodRoom, NnxMethod, on_call, on_leave,
)

RULE_CORE = register(
    "HK400", "recurrent-core", Status.CONVERTED,
    "hk.LSTM / VanillaRNN / GRU / DeepRNN cores, their unrolls and steps -> Flax cells under nn.RNN / nnx.RNN", __name__,
    apis=("LSTM", "GRU", "VanillaRNN", "DeepRNN", "dynamic_unroll", "static_unroll"),
)
RULE_CORE_USE = register(
    "HK401", "recurrent-core-use", Status.NOT_CONVERTED,
    "a core or unroll the rule cannot follow (core passed on, unrolled and stepped, reverse=...): TODO saying why", __name__,
)
RULE_LSTM_STATE = register("HK402", "lstm-state", Status.CONVERTED, "hk.LSTMState(hidden, cell) -> Flax's (c, h) carry", __name__, apis=("LSTMState",))
RULE_CORE_CLASS = register(
    "HK403", "rnn-core-subclass", Status.NOT_CONVERTED,
    "user hk.RNNCore subclasses: TODO saying how a Flax cell differs (argument order, initialize_carry)", __name__,
    apis=("RNNCore",),
)

CELLS = ("LSTM", "GRU", "VanillaRNN")
UNROLL_ARGS = {
    "dynamic_unroll": ("core", "input_sequence", "initial_state", "time_major", "reverse", "return_all_states", "unroll"),
    "static_unroll": ("core", "input_sequence", "initial_state", "time_major"),
}
UNROLL_TODO = {
    "reverse": "Flax's `reverse=` returns the outputs in scan order unless `keep_order=True`; check and convert by hand",
    "return_all_states": "`nn.RNN` returns only the final carry; collect the states in a custom cell's output",
}
GRU_ARGS = ("hidden_size", "w_i_init", "w_h_init", "b_init", "name")
DEEP_RNN_ARGS = ("layers", "name")
LSTM_STATE_ARGS = ("hidden", "cell")
LSTM_STATE_INDEX = {"cell": "0", "hidden": "1"}  # Flax's LSTM carry is (c, h)
GRU_CELL = "HaikuGRUCell"
CORE_CLASS_REASON = (
    "a Flax cell subclasses `{ns}.RNNCellBase`: `__call__(carry, inputs) -> (carry, output)` (Haiku's order "
    "reversed) and `initialize_carry({carry_args})` for `initial_state`; rewrite this core by hand, then unroll "
    "it with `{ns}.RNN`"
)
CARRY_ARGS = {"linen": "rng, input_shape", "nnx": "input_shape, rngs"}

# hk.GRU's equations with its parameter layout (w_i (I, 3H), w_h (H, 3H), b (3H), blocks z, r, a), so the
# weights copy over unchanged. Haiku's defaults: VarianceScaling(1, fan_in, truncated normal), zero bias.
GRU_DOC = '''"""hk.GRU as a Flax cell: Haiku applies the reset gate before the hidden matmul, Flax's GRUCell after it."""'''
GRU_STEP = """
    zr_x, a_x = jnp.split(inputs @ w_i, [2 * hidden], axis=-1)
    z, r = jnp.split(jax.nn.sigmoid(zr_x + carry @ w_h[:, : 2 * hidden] + b[: 2 * hidden]), 2, axis=-1)
    a = jnp.tanh(a_x + (r * carry) @ w_h[:, 2 * hidden :] + b[2 * hidden :])
    new_carry = (1 - z) * carry + z * a
    return new_carry, new_carry
"""
GRU_CELL_SOURCE = {
    "linen": f'''
class {GRU_CELL}(nn.RNNCellBase):
  {GRU_DOC}

  features: int

  @nn.compact
  def __call__(self, carry, inputs):
    hidden = self.features
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
    w_i = self.param("w_i", init, (inputs.shape[-1], 3 * hidden))
    w_h = self.param("w_h", init, (hidden, 3 * hidden))
    b = self.param("b", nn.initializers.zeros_init(), (3 * hidden,))
{GRU_STEP}
  def initialize_carry(self, rng, input_shape):
    return jnp.zeros((*input_shape[:-1], self.features))

  @property
  def num_feature_axes(self) -> int:
    return 1
''',
    "nnx": f'''
class {GRU_CELL}(nnx.RNNCellBase):
  {GRU_DOC}

  def __init__(self, in_features: int, hidden_features: int, *, rngs: nnx.Rngs):
    init = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
    self.hidden_features = hidden_features
    self.w_i = nnx.Param(init(rngs.params(), (in_features, 3 * hidden_features)))
    self.w_h = nnx.Param(init(rngs.params(), (hidden_features, 3 * hidden_features)))
    self.b = nnx.Param(jnp.zeros((3 * hidden_features,)))

  def __call__(self, carry, inputs):
    hidden = self.hidden_features
    w_i, w_h, b = self.w_i[...], self.w_h[...], self.b[...]
{GRU_STEP}
  def initialize_carry(self, input_shape, rngs=None):
    return jnp.zeros((*input_shape[:-1], self.hidden_features))

  @property
  def num_feature_axes(self) -> int:
    return 1
''',
}


# -- reading a method: which cores it builds and how it uses them ------------------------------------------
@dataclass
class Unroll:
    """`outs, state = hk.dynamic_unroll(core, xs, initial, ...)`, read for `nn.RNN`."""

    inputs: cst.BaseExpression
    outputs: cst.BaseExpression
    state: cst.BaseExpression | None  # None: the final state is discarded
    initial: cst.BaseExpression | None  # None: Haiku's zero state, Flax's default carry
    time_major: cst.BaseExpression | None  # None: batch-major, Flax's default
    unroll: cst.BaseExpression | None


@dataclass
class Core:
    """A core built in the method (`name = hk.LSTM(...)`) and every use the rule converts."""

    name: str
    api: str
    constructor: cst.Call
    unroll: Unroll | None = None
    steps: list[cst.Call] = field(default_factory=list)  # `core(x, state)` as the value of `out, state = ...`
    initial_states: list[cst.Call] = field(default_factory=list)  # `core.initial_state(B)` kept as a carry
    step_input: cst.BaseExpression | None = None  # the input of the first step: its shape sizes the carry
    problem: str | None = None


ZeroState = tuple[Core, cst.BaseStatement, cst.Call]  # `init = core.initial_state(B)`: core, statement, call


@dataclass
class MethodCores:
    """What one method does with recurrent cores: the rewriters look nodes up here by id."""

    cores: dict[str, Core] = field(default_factory=dict)
    by_node: dict[cst.CSTNode, Core] = field(default_factory=dict)  # constructors, unroll/step assignments, initial states
    dropped: dict[cst.CSTNode, Core] = field(default_factory=dict)  # statements that only built a core's zero initial state
    lstm_states: set[str] = field(default_factory=set)  # names holding an LSTM state: `.hidden` / `.cell` read there
    problems: dict[cst.CSTNode, str] = field(default_factory=dict)  # unrolls of cores the rule cannot see -> why
    unseen: set[str] = field(default_factory=set)  # those cores, as written (`self.core`): their `initial_state` stays


def _pair_target(assign: cst.Assign) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    if len(assign.targets) != 1 or not isinstance(assign.targets[0].target, cst.Tuple | cst.List):
        return None
    elements = assign.targets[0].target.elements
    return (elements[0].value, elements[1].value) if len(elements) == 2 and not any(isinstance(e, cst.StarredElement) for e in elements) else None


def _is_discarded(target: cst.BaseExpression, uses: dict[str, int]) -> bool:
    return isinstance(target, cst.Name) and (target.value == "_" or uses.get(target.value, 0) <= 1)


def _name_uses(body: cst.CSTNode) -> dict[str, int]:
    """How often each name occurs in `body` (attribute names after a dot are not names)."""
    nodes = list(descendants(body))
    attributes = {n.attr for n in nodes if isinstance(n, cst.Attribute)}
    keywords = {n.keyword for n in nodes if isinstance(n, cst.Arg) and n.keyword is not None}
    uses: dict[str, int] = {}
    for node in nodes:
        if isinstance(node, cst.Name) and node not in attributes and node not in keywords:
            uses[node.value] = uses.get(node.value, 0) + 1
    return uses


def _initial_state_of(node: cst.BaseExpression | None, cores: dict[str, Core]) -> Core | None:
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and isinstance(node.func.value, cst.Name) and node.func.attr.value == "initial_state":
        return cores.get(node.func.value.value)
    return None


def read_method(body: cst.BaseSuite, names: ImportedNames, tables: Tables) -> MethodCores:
    """The cores a method body builds at its top level, and whether each is used only in ways Flax can say."""
    found = MethodCores()
    statements = body.body if isinstance(body, cst.IndentedBlock) else ()
    zero_states: dict[str, ZeroState] = {}  # `init = core.initial_state(B)`
    for statement in statements:
        assign = analysis.simple_assign(statement)
        if assign is None or not isinstance(assign[0], cst.Name) or not isinstance(assign[1], cst.Call):
            continue
        api = names.haiku_api(assign[1].func)
        if api is not None and api in (*CELLS, "DeepRNN"):
            core = found.cores[assign[0].value] = Core(assign[0].value, api, assign[1])
            core.problem = _constructor_problem(core, names, tables)
            found.by_node[assign[1]] = core
        elif (state_of := _initial_state_of(assign[1], found.cores)) is not None:
            zero_states[assign[0].value] = (state_of, statement, assign[1])
    uses = _name_uses(body)
    seen: dict[str, int] = {name: 1 for name in found.cores}  # the assignment itself
    zero_calls = {call for _, _, call in zero_states.values()}
    for node in descendants(body):
        if isinstance(node, cst.Assign) and isinstance(node.value, cst.Call):
            _read_use(node, found, names, uses, zero_states, seen)
        elif isinstance(node, cst.Call) and node not in found.by_node and node not in zero_calls:
            _count_initial_state(node, found, seen)
    for _, statement, call in zero_states.values():
        if statement not in found.dropped:
            _count_initial_state(call, found, seen)
    for core in found.cores.values():
        if core.problem is None and seen.get(core.name, 0) != uses.get(core.name, 0):
            core.problem = f"`{core.name}` is used other than unrolled, stepped or asked its `initial_state` here; convert it by hand"
        if core.problem is None and core.unroll is not None and (core.steps or core.initial_states):
            core.problem = f"`{core.name}` is both unrolled and stepped: build one Flax cell and wrap it in `nn.RNN` by hand"
        if core.problem is None and core.unroll is None and core.api == "DeepRNN":
            core.problem = "a stepped `hk.DeepRNN` has no Flax counterpart: step each core by hand"
    _read_lstm_states(statements, found, names)
    return found


def _count_initial_state(call: cst.Call, found: MethodCores, seen: dict[str, int]) -> None:
    core = _initial_state_of(call, found.cores)
    if core is not None:
        seen[core.name] += 1
        found.by_node[call] = core
        core.initial_states.append(call)


def _constructor_problem(core: Core, names: ImportedNames, tables: Tables) -> str | None:
    """Why the core's constructor cannot convert, checked before anything is rewritten (NNX moves it)."""
    try:
        if core.api == "DeepRNN":
            _deep_rnn_layers(core.constructor, core.constructor, names)
        else:
            _cell_args(core.constructor, core.api, tables)
    except Unconvertible as reason:
        return str(reason)
    return None


def _cell_args(call: cst.Call, api: str, tables: Tables) -> dict[str, cst.BaseExpression]:
    """The constructor's arguments, or Unconvertible when its Flax cell cannot take them."""
    if api == "GRU":
        args = BoundCall.bind(call, GRU_ARGS, "hk.GRU").args
        custom = sorted(set(args) - {"hidden_size", "name"})
        if custom or "hidden_size" not in args:
            raise Unconvertible(f"`hk.GRU({', '.join(custom)}=...)`: give `{GRU_CELL}` these initializers by hand")
        return args
    construct = tables.get(api)
    assert construct is not None
    convert_construct_call(call, construct, "nnx", "nnx", (cst.Name("din"),))  # raises what the table cannot say
    return BoundCall.bind(call, construct.haiku_args, f"hk.{api}").args


def _read_use(
    assign: cst.Assign, found: MethodCores, names: ImportedNames, uses: dict[str, int], zero_states: dict[str, ZeroState], seen: dict[str, int]
) -> None:
    """`outs, state = hk.dynamic_unroll(core, ...)` or `out, state = core(x, state)`."""
    call = assign.value
    assert isinstance(call, cst.Call)  # `read_method` passes assignments of calls
    api = names.haiku_api(call.func)
    pair = _pair_target(assign)
    if api in UNROLL_ARGS:
        try:
            args = BoundCall.bind(call, UNROLL_ARGS[api], f"hk.{api}").args
        except Unconvertible as reason:
            found.problems[call] = str(reason)
            return
        core_arg = args.get("core")
        core = found.cores.get(core_arg.value) if isinstance(core_arg, cst.Name) else None
        if core is None:
            if core_arg is not None:
                found.unseen.add(code(core_arg))
            found.problems[call] = (
                f"`hk.{api}` unrolls a core this rule cannot see (not an hk.LSTM / GRU / VanillaRNN / DeepRNN built "
                "in this method): make the core a Flax cell and unroll it with `nn.RNN(cell, time_major=True, return_carry=True)`"
            )
            return
        seen[core.name] += 1
        found.by_node[assign] = core
        if pair is None:
            core.problem = f"unpack `hk.{api}`'s result as `outputs, state = ...`: Flax returns `(carry, outputs)`"
            return
        if core.unroll is not None:
            core.problem = f"`{core.name}` is unrolled twice: build one `nn.RNN` for it by hand"
            return
        for name, why in UNROLL_TODO.items():
            value = args.get(name)
            if value is not None and literal(value) is not False:
                core.problem = f"`hk.{api}({name}=...)`: {why}"
                return
        state = None if _is_discarded(pair[1], uses) else pair[1]
        if core.api == "DeepRNN" and state is not None:
            core.problem = "the final state of an unrolled `hk.DeepRNN` has no Flax counterpart (one carry per layer): read it by hand"
            return
        initial = args.get("initial_state")
        zero, zero_statement = _initial_state_of(initial, found.cores), None
        if isinstance(initial, cst.Name) and initial.value in zero_states and uses.get(initial.value) == 2:
            zero, zero_statement, _ = zero_states[initial.value]
        if zero is not None and zero is not core:
            core.problem = f"`{core.name}` starts from another core's initial state"
            return
        if zero is not None:  # Haiku's zero state: Flax's default carry
            seen[core.name] += 1
            if zero_statement is None:
                if initial is not None:
                    found.by_node[initial] = core
            else:
                found.dropped[zero_statement] = core
            initial = None
        time_major = args.get("time_major", cst.Name("True"))
        core.unroll = Unroll(args["input_sequence"], pair[0], state, initial, None if literal(time_major) is False else time_major, args.get("unroll"))
    elif isinstance(call.func, cst.Name) and call.func.value in found.cores:
        core = found.cores[call.func.value]
        seen[core.name] += 1
        found.by_node[assign] = core
        positional = [a for a in call.args if a.keyword is None and not a.star]
        if pair is None or len(positional) != 2 or len(call.args) != 2:
            core.problem = f"call `{core.name}(inputs, state)` as `output, state = ...`: a Flax cell returns `(carry, output)`"
            return
        core.steps.append(call)
        if core.step_input is None:
            core.step_input = positional[0].value


def _read_lstm_states(statements: Sequence[cst.BaseStatement], found: MethodCores, names: ImportedNames) -> None:
    """Names holding an LSTM state: from an LSTM's `initial_state`, step or unroll, or `hk.LSTMState(...)`."""
    lstm_cores = {c.name for c in found.cores.values() if c.api == "LSTM" and c.problem is None}
    for node in descendants(cst.IndentedBlock(body=list(statements))):
        if not isinstance(node, cst.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0].target, node.value
        pair = _pair_target(node)
        core = found.by_node.get(node)
        if core is not None and core.name in lstm_cores and pair is not None and isinstance(pair[1], cst.Name):
            found.lstm_states.add(pair[1].value)
        elif isinstance(target, cst.Name) and isinstance(value, cst.Call):
            state_of = _initial_state_of(value, found.cores)
            if names.haiku_api(value.func) == "LSTMState" or (state_of is not None and state_of.name in lstm_cores):
                found.lstm_states.add(target.value)


def lstm_state_tuple(call: cst.Call) -> cst.Tuple:
    """`hk.LSTMState(hidden=h, cell=c)` -> `(c, h)`."""
    args = BoundCall.bind(call, LSTM_STATE_ARGS, "hk.LSTMState").args
    if set(args) != set(LSTM_STATE_ARGS):
        raise Unconvertible("`hk.LSTMState` needs both `hidden` and `cell`")
    return as_tuple([args["cell"], args["hidden"]])


def _swapped_pair(assign: cst.Assign) -> cst.Tuple:
    """`a, b = ...` -> `b, a`: Flax returns the carry first."""
    first, second = _pair(assign)
    return cst.Tuple([cst.Element(second, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))), cst.Element(first)], lpar=[], rpar=[])


def _carry_shape(core: Core, call: cst.Call) -> cst.BaseExpression:
    """The cell input shape of `core.initial_state(B)`: `x.shape` when B is `x.shape[0]`, else `(B, x.shape[-1])`."""
    batch = call.args[0].value if len(call.args) == 1 and call.args[0].keyword is None else None
    step = core.step_input
    if batch is None or not isinstance(step, cst.Name):
        raise Unconvertible(
            f"`{core.name}.initial_state(...)`: the Flax carry is built from the input's shape; "
            "step the core on a named input and pass the batch size positionally"
        )
    shape = cst.Attribute(step, cst.Name("shape"))
    index = batch.slice[0].slice if isinstance(batch, cst.Subscript) else None
    if m.matches(batch, m.Subscript(m.Attribute(m.Name(step.value), m.Name("shape")))) and isinstance(index, cst.Index) and literal(index.value) == 0:
        return shape
    last = cst.Subscript(shape, [cst.SubscriptElement(cst.Index(cst.UnaryOperation(cst.Minus(), cst.Integer("1"))))])
    return as_tuple([batch, last])


def _rnn_args(unroll: Unroll) -> list[cst.Arg]:
    args = []
    if unroll.time_major is not None:
        args.append(keyword_arg("time_major", unroll.time_major))
    if unroll.state is not None:
        args.append(keyword_arg("return_carry", cst.Name("True")))
    if unroll.unroll is not None and literal(unroll.unroll) != 1:
        args.append(keyword_arg("unroll", unroll.unroll))
    return args


def _rnn_call_args(inputs: cst.BaseExpression, initial: cst.BaseExpression | None) -> list[cst.Arg]:
    return [cst.Arg(inputs), *([keyword_arg("initial_carry", initial)] if initial is not None else [])]


# -- what both targets share: each function's cores, LSTM states, TODOs ------------------------------------
@dataclass
class FileCores:
    """The cores of each function of the file, read from its original body when a rule first asks."""

    names: ImportedNames
    tables: Tables
    reads: bool  # the rule is on and the file mentions a core: otherwise no function has any
    by_body: dict[cst.CSTNode, MethodCores] = field(default_factory=dict)

    def of(self, function: cst.FunctionDef | None) -> MethodCores | None:
        if not self.reads or function is None or not isinstance(function.body, cst.IndentedBlock):
            return None
        cores = self.by_body.get(function.body)
        if cores is None:
            cores = self.by_body[function.body] = read_method(function.body, self.names, self.tables)
        return cores


CORES = FileFact(
    lambda module, ctx: FileCores(ctx.names, ctx.tables, ctx.enabled(RULE_CORE) and ctx.mentions(*CELLS, "DeepRNN", "unroll", "LSTMState"))
)


def _cores(room: MethodRoom) -> MethodCores | None:
    """The cores of the function being converted."""
    return room.ctx.fact(CORES).of(room.function)


def _core_of(room: MethodRoom, node: cst.CSTNode) -> Core | None:
    """The core a constructor, unroll or step assignment, or initial state belongs to, if the rule converts it."""
    cores = _cores(room)
    core = cores.by_node.get(node) if cores is not None else None
    return core if core is not None and core.problem is None else None


def _is_dropped(room: MethodRoom, statement: cst.CSTNode) -> bool:
    """A statement that only built a zero initial state, which Flax's unroll makes itself."""
    cores = _cores(room)
    core = cores.dropped.get(statement) if cores is not None else None
    return core is not None and core.problem is None


def _asks_initial_state(call: cst.Call) -> bool:
    """`<something>.initial_state(...)`: worth looking up (every call of a method passes here)."""
    return isinstance(call.func, cst.Attribute) and call.func.attr.value == "initial_state"


def _initial_carry_shape(room: MethodRoom, call: cst.Call) -> tuple[Core, cst.BaseExpression] | None:
    """`core.initial_state(batch)`: the core and the input shape Flax's `initialize_carry` takes (else None;
    a TODO where the shape cannot be written)."""
    if not _asks_initial_state(call):
        return None
    core = _core_of(room, call)
    if core is None:
        _flag_unseen_initial_state(room, call)
        return None
    if not any(call is c for c in core.initial_states):
        return None
    try:
        return core, _carry_shape(core, call)
    except Unconvertible as reason:
        room.todo(call, RULE_CORE_USE, str(reason))
        return None


def _flag_unseen_initial_state(room: MethodRoom, call: cst.Call) -> None:
    """A TODO on `self.core.initial_state(B)` of a core whose unroll the rule cannot see: Flax cells have
    no `initial_state`, so it fails there, before the unroll that carries the TODO."""
    cores = _cores(room)
    assert isinstance(call.func, cst.Attribute)  # `_asks_initial_state` checked it
    owner = code(call.func.value)
    if cores is not None and owner in cores.unseen:
        room.todo(call, RULE_CORE_USE, f"Flax cells have no `initial_state`: with the unroll of `{owner}`, build its carry by hand (`{owner}.initialize_carry`)")


def _flag_core_problems(room: MethodRoom, original: cst.Assign) -> None:
    """A TODO on a core's constructor and uses when the rule cannot follow it, or on an unroll of an unknown core."""
    cores = _cores(room)
    if cores is None:
        return
    reason = cores.problems.get(original.value)
    core = cores.by_node.get(original.value) or cores.by_node.get(original)
    if reason is None and core is not None and core.problem is not None:
        reason = core.problem
    if reason is not None:
        room.todo(original, RULE_CORE_USE, reason)


def _unroll_bound(original: cst.Assign, value: cst.Call, names: ImportedNames) -> dict[str, cst.BaseExpression]:
    """The arguments of the (rewritten) unroll `value` of an unroll assignment the rule read."""
    assert isinstance(original.value, cst.Call)
    api = names.haiku_api(original.value.func)
    assert api is not None
    return BoundCall.bind(value, UNROLL_ARGS[api], "unroll").args


def _gru_cell(room: FileRoom, call: cst.Call, inputs: tuple[cst.BaseExpression, ...], extra: list[cst.Arg]) -> cst.Call:
    """`hk.GRU(H)` -> `HaikuGRUCell(H)` / `HaikuGRUCell(din, H, rngs=rngs)`; the class is added to the file."""
    ctx = room.ctx
    args = _cell_args(call, "GRU", ctx.tables)
    ctx.needed_imports |= {("jax", None, None), ("jax.numpy", None, "jnp")}
    ctx.need_target_import()
    return cst.Call(cst.Name(GRU_CELL), [*(cst.Arg(i) for i in inputs), cst.Arg(args["hidden_size"]), *extra])


def _define_gru_cell(ctx: Context) -> None:
    """The file defines `HaikuGRUCell` (once, before its first class or function)."""
    cell = cst.parse_module(GRU_CELL_SOURCE[ctx.target]).body[0]
    assert isinstance(cell, cst.ClassDef)
    ctx.need_definition(rename_namespace(cell, ctx.ns))


def _warn_double_bias(room: FileRoom, call: cst.Call) -> None:
    """hk.VanillaRNN's two biases (the default) train differently from SimpleCell's one."""
    double = _cell_args(call, "VanillaRNN", room.ctx.tables).get("double_bias")
    if double is None or literal(double) is not False:
        room.warn(call, RULE_CORE, "Haiku's two biases become SimpleCell's one (their sum): the same function, "
                  "but under SGD Haiku's sum moved twice as fast")


@on_call("LSTMState", rule=RULE_LSTM_STATE)
def lstm_state(room: MethodRoom, call: CallSite) -> cst.BaseExpression | None:
    """`hk.LSTMState(hidden=h, cell=c)` -> `(c, h)`."""
    try:
        state = lstm_state_tuple(call.updated)
    except Unconvertible as reason:
        room.todo(call.original, RULE_LSTM_STATE, str(reason))
        return None
    room.converted(call.original, RULE_LSTM_STATE, "hk.LSTMState(hidden, cell) -> (c, h)")
    return state


@on_leave(cst.Attribute, rule=RULE_CORE)  # the names are known where the core rule read the method
def lstm_state_field(room: MethodRoom, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression | None:
    """`state.hidden` / `state.cell` -> `state[1]` / `state[0]` on a name holding an LSTM state."""
    if not (isinstance(original.value, cst.Name) and original.attr.value in LSTM_STATE_INDEX):
        return None
    cores = _cores(room)
    if cores is None or original.value.value not in cores.lstm_states:
        return None
    index = LSTM_STATE_INDEX[original.attr.value]
    room.converted(original, RULE_LSTM_STATE, f"LSTMState.{original.attr.value} -> carry[{index}]")
    return cst.Subscript(updated.value, [cst.SubscriptElement(cst.Index(cst.Integer(index)))])


@on_leave(cst.Call, rule=RULE_CORE_USE)
def core_stepped_where_built(room: MethodRoom, original: cst.Call, updated: cst.Call) -> None:
    """`hk.LSTM(H)(x, state)`: a TODO, as the step of a core the rule does not follow (Flax cells take the
    carry first and return it first; only a named core's step is reordered)."""
    if isinstance(original.func, cst.Call) and room.ctx.names.haiku_api(original.func.func) in CELLS:
        room.todo(
            original, RULE_CORE_USE,
            "a core stepped where it is built: name it (`core = hk.LSTM(H)`) and step it (`out, state = core(x, state)`), "
            "which converts; Flax cells take and return the carry first",
        )


# -- the file: user cores ------------------------------------------------------------------------------------
def _core_classes(module: cst.Module, ctx: Context) -> set[cst.CSTNode]:
    """The top-level classes subclassing `hk.RNNCore`."""
    if not ctx.mentions("RNNCore"):
        return set()
    return {
        s
        for s in module.body
        if isinstance(s, cst.ClassDef) and any(ctx.names.haiku_api(b.value) == "RNNCore" for b in s.bases)
    }


CORE_CLASSES = FileFact(_core_classes)


def flag_core_class(room: FileRoom, node: cst.ClassDef) -> None:
    """A user `hk.RNNCore` subclass: a TODO saying how a Flax cell differs."""
    if node in room.ctx.fact(CORE_CLASSES):
        room.todo(node, RULE_CORE_CLASS, CORE_CLASS_REASON.format(ns=room.ctx.ns, carry_args=CARRY_ARGS[room.ctx.target]))


LINEN_NODES.on_visit(cst.ClassDef, rule=RULE_CORE_CLASS)(flag_core_class)
NNX_FILE_NODES.on_visit(cst.ClassDef, rule=RULE_CORE_CLASS)(flag_core_class)


# -- Linen: the core stays a local (`core = nn.LSTMCell(H)`); unrolls become `nn.RNN(core, ...)(xs)` --------
@LINEN_NODES.on_leave(cst.SimpleStatementLine, rule=RULE_CORE)
def linen_zero_state(room: LinenMethod, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine) -> cst.RemovalSentinel | None:
    """`init = core.initial_state(B)` only passed to the unroll goes: Flax's default carry is that zero state."""
    return cst.RemoveFromParent() if _is_dropped(room, original) else None


@LINEN_CALLS.on("GRU", "DeepRNN", rule=RULE_CORE)
def linen_cell(room: LinenMethod, call: CallSite) -> cst.BaseExpression | None:
    """GRU and DeepRNN (LSTM and VanillaRNN are table layers, which the converter rewrites itself)."""
    core = _core_of(room, call.original)
    if core is None or call.original is not core.constructor:
        return None
    try:
        cell = _gru_cell(room, call.updated, (), []) if core.api == "GRU" else _linen_deep_rnn(room, call, core)
    except Unconvertible as reason:
        room.todo(call.original, RULE_CORE, str(reason))
        return call.updated
    if core.api == "GRU":
        _define_gru_cell(room.ctx)
    room.mark_builds_layer()
    room.converted(call.original, RULE_CORE, f"hk.{core.api} -> {code(cell.func)}")
    return cell


def _linen_deep_rnn(room: LinenMethod, call: CallSite, core: Core) -> cst.Call:
    """`nn.Sequential([nn.RNN(cell), fn, ...])`."""
    ctx = room.ctx
    unroll = core.unroll
    assert unroll is not None
    wrapped = []
    grus = 0
    for old, new, is_core in _deep_rnn_layers(call.original, call.updated, ctx.names):
        if is_core:
            assert isinstance(old, cst.Call) and isinstance(new, cst.Call)  # cores are calls
            if ctx.names.haiku_api(old.func) == "GRU":
                new, grus = _gru_cell(room, new, (), []), grus + 1
            new = cst.Call(attr(ctx.ns, "RNN"), [cst.Arg(new), *_rnn_args(unroll)])
        wrapped.append(cst.Element(new))
    if grus:
        _define_gru_cell(ctx)
    ctx.need_target_import()
    return cst.Call(attr(ctx.ns, "Sequential"), [cst.Arg(cst.List(wrapped))])


@LINEN_NODES.on_leave(cst.Call, rule=RULE_CORE)
def linen_initial_state(room: LinenMethod, original: cst.Call, updated: cst.Call) -> cst.BaseExpression | None:
    """`core.initial_state(B)` -> `core.initialize_carry(jax.random.key(0), shape)`."""
    initial = _initial_carry_shape(room, original)
    if initial is None:
        return None
    core, shape = initial
    room.ctx.needed_imports.add(("jax", None, None))
    key = cst.parse_expression("jax.random.key(0)")
    return cst.Call(cst.Attribute(cst.Name(core.name), cst.Name("initialize_carry")), [cst.Arg(key), cst.Arg(shape)])


@LINEN_NODES.on_leave(cst.Assign, rule=RULE_CORE)
def linen_core_use(room: LinenMethod, original: cst.Assign, updated: cst.Assign) -> cst.Assign | None:
    """An unroll -> `nn.RNN(core, ...)(xs)`; a step `out, state = core(x, state)` -> `state, out = core(state, x)`."""
    core = _core_of(room, original)
    if core is None:
        _flag_core_problems(room, original)
        built = _core_of(room, original.value)
        if built is not None and built.api == "VanillaRNN":
            _warn_double_bias(room, built.constructor)
        return None
    ctx = room.ctx
    value = updated.value
    assert isinstance(value, cst.Call)  # an unroll or a step, as `read_method` found it
    if core.unroll is None:
        return _step(room, original, updated, value.func)
    unroll = core.unroll
    bound = _unroll_bound(original, value, ctx.names)
    initial = bound.get("initial_state") if unroll.initial is not None else None
    ctx.need_target_import()
    room.mark_builds_layer()
    rnn: cst.BaseExpression = cst.Name(core.name)
    if core.api != "DeepRNN":
        rnn = cst.Call(attr(ctx.ns, "RNN"), [cst.Arg(rnn), *_rnn_args(unroll)])
    room.converted(original, RULE_CORE, f"hk unroll -> {ctx.ns}.RNN")
    return _unroll_assign(updated, unroll, cst.Call(rnn, _rnn_call_args(bound["input_sequence"], initial)))


def _step(room: MethodRoom, original: cst.Assign, updated: cst.Assign, cell: cst.BaseExpression) -> cst.Assign:
    """`out, state = core(x, state)` -> `state, out = cell(state, x)`."""
    value = updated.value
    assert isinstance(value, cst.Call)  # a step, as `read_method` found it
    step_input, state = (a.value for a in value.args)
    room.converted(original, RULE_CORE, "core(inputs, state) -> cell(carry, inputs)")
    return updated.with_changes(
        targets=[cst.AssignTarget(_swapped_pair(updated))], value=value.with_changes(func=cell, args=[cst.Arg(state), cst.Arg(step_input)])
    )


def _pair(assign: cst.Assign) -> tuple[cst.BaseExpression, cst.BaseExpression]:
    """The two targets of `a, b = ...`, which `read_method` found there."""
    pair = _pair_target(assign)
    assert pair is not None
    return pair


def _unroll_assign(updated: cst.Assign, unroll: Unroll, call: cst.Call) -> cst.Assign:
    """`outs, state = <unroll>` -> `state, outs = <rnn>` (or `outs = <rnn>` when the state is discarded)."""
    if unroll.state is None:
        outputs = _pair(updated)[0]
        assert isinstance(outputs, cst.BaseAssignTargetExpression)  # an element of an assignment's target
        return updated.with_changes(targets=[cst.AssignTarget(outputs)], value=call)
    return updated.with_changes(targets=[cst.AssignTarget(_swapped_pair(updated))], value=call)


def _deep_rnn_layers(original: cst.Call, updated: cst.Call, names: ImportedNames) -> list[tuple[cst.BaseExpression, cst.BaseExpression, bool]]:
    """(Haiku layer, converted layer, is a core) for each layer of `hk.DeepRNN([...])`."""
    old_layers = BoundCall.bind(original, DEEP_RNN_ARGS, "hk.DeepRNN").args.get("layers")
    new_layers = BoundCall.bind(updated, DEEP_RNN_ARGS, "hk.DeepRNN").args.get("layers")
    if not isinstance(old_layers, cst.List | cst.Tuple) or any(isinstance(e, cst.StarredElement) for e in old_layers.elements):
        raise Unconvertible("`hk.DeepRNN` needs a literal list of layers to be converted")
    assert isinstance(new_layers, cst.List | cst.Tuple)  # the same list, as the rules below it left it
    layers = []
    for old, new in zip(old_layers.elements, new_layers.elements, strict=True):
        api = names.haiku_api(old.value.func) if isinstance(old.value, cst.Call) else None
        if isinstance(old.value, cst.Call) and api not in CELLS:
            raise Unconvertible(f"`hk.DeepRNN` layer `{code(old.value)}`: only hk.LSTM, GRU and VanillaRNN cores (and functions) convert")
        layers.append((old.value, new.value, api is not None))
    return layers


# -- NNX: the core is built in `__init__` (`self.lstm`), wrapped in `nnx.RNN` when it is unrolled; its
# statement leaves the method ----------------------------------------------------------------------------------
@dataclass
class _BuiltCores:
    """The cores of one method built in `__init__` so far."""

    attributes: dict[str, str] = field(default_factory=dict)  # core name -> attribute
    built: set[str] = field(default_factory=set)


@NNX_NODES.on_visit(cst.SimpleStatementLine, rule=RULE_CORE)
def nnx_core_built_in_init(room: NnxMethod, node: cst.SimpleStatementLine) -> None:
    """A core whose constructor reads what `__init__` does not have stays where it is (with can_hoist's TODO)."""
    assign = analysis.simple_assign(node)
    core = _core_of(room, assign[1]) if assign is not None else None
    if core is not None and assign is not None and assign[1] is core.constructor and not room.can_hoist([a.value for a in core.constructor.args], node):
        core.problem = f"`{core.name}` cannot be built in `__init__`"


@NNX_NODES.on_leave(cst.SimpleStatementLine, rule=RULE_CORE)
def nnx_core_statement(room: NnxMethod, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine) -> cst.RemovalSentinel | None:
    """The core's constructor (now built in `__init__`) and a dropped zero initial state leave the method."""
    assign = analysis.simple_assign(original)
    core = _core_of(room, assign[1]) if assign is not None else None
    built_here = core is not None and assign is not None and assign[1] is core.constructor
    return cst.RemoveFromParent() if built_here or _is_dropped(room, original) else None


def _attribute(room: NnxMethod, core: Core) -> str:
    attributes = room.family(_BuiltCores).attributes
    if core.name not in attributes:
        attributes[core.name] = room.new_attribute(analysis.snake_case(core.api), analysis.explicit_name(core.constructor))
    return attributes[core.name]


def _nnx_cell(room: NnxMethod, constructor: cst.Call, api: str, size: cst.BaseExpression) -> cst.Call:
    if api == "GRU":
        cell = _gru_cell(room, constructor, (size,), [keyword_arg("rngs", cst.Name("rngs"))])
        _define_gru_cell(room.ctx)
        return cell
    if api == "VanillaRNN":
        _warn_double_bias(room, constructor)
    ctx = room.ctx
    construct = ctx.tables.get(api)
    assert construct is not None  # LSTM and VanillaRNN have table entries
    cell = convert_construct_call(constructor, construct, "nnx", ctx.ns, (size,), {"rngs": cst.Name("rngs")}, ctx=ctx)
    assert isinstance(cell, cst.Call)
    return cell


def _nnx_build(room: NnxMethod, core: Core, inputs: cst.BaseExpression, node: cst.CSTNode) -> tuple[str, cst.BaseExpression | None]:
    """Build the core in `__init__` (once) for its first input: (attribute, output feature size)."""
    attribute = _attribute(room, core)
    size = room.conversion.input_size(attribute, room.size_of(inputs), room, node)
    if core.api == "DeepRNN":
        built, output = _nnx_deep_rnn(room, core, size, attribute, node)
    else:
        built = _nnx_cell(room, core.constructor, core.api, size)
        if core.unroll is not None:
            built = cst.Call(attr(room.ctx.ns, "RNN"), [cst.Arg(built), *_rnn_args(core.unroll)])
        output = _cell_args(core.constructor, core.api, room.ctx.tables)["hidden_size"]
    state = room.family(_BuiltCores)
    if core.name not in state.built:
        state.built.add(core.name)
        room.add_to_init(attribute, built, core.constructor, needs_rngs=True)
        room.converted(core.constructor, RULE_CORE, f"hk.{core.api} -> {code(built.func)} (self.{attribute})")
    return attribute, output


def _nnx_deep_rnn(room: NnxMethod, core: Core, size: cst.BaseExpression, attribute: str, node: cst.CSTNode) -> tuple[cst.Call, cst.BaseExpression | None]:
    """`nnx.Sequential(nnx.RNN(cell), fn, ...)`, each cell sized by what the layers before it output."""
    ctx, unroll = room.ctx, core.unroll
    assert unroll is not None  # a stepped DeepRNN is a TODO
    layers: list[cst.Arg] = []
    current: cst.BaseExpression | None = size
    for layer, _, is_core in _deep_rnn_layers(core.constructor, core.constructor, ctx.names):
        if not is_core:
            layers.append(cst.Arg(layer))
            if (dotted_name(layer) or "").rsplit(".", 1)[-1] not in ELEMENTWISE_NAMES:
                current = None  # a function that may change the size
            continue
        assert isinstance(layer, cst.Call)
        api = ctx.names.haiku_api(layer.func)
        assert api is not None  # `_deep_rnn_layers` read it as a core
        layer_size = current if current is not None else room.conversion.input_size(f"{attribute}_{len(layers)}", None, room, node)
        cell = _nnx_cell(room, layer, api, layer_size)
        layers.append(cst.Arg(cst.Call(attr(ctx.ns, "RNN"), [cst.Arg(cell), *_rnn_args(unroll)])))
        current = _cell_args(layer, api, ctx.tables)["hidden_size"]
    return cst.Call(attr(ctx.ns, "Sequential"), layers), current


@NNX_NODES.on_leave(cst.Call, rule=RULE_CORE)
def nnx_initial_state(room: NnxMethod, original: cst.Call, updated: cst.Call) -> cst.BaseExpression | None:
    """`core.initial_state(B)` -> `self.lstm.initialize_carry(shape, nnx.Rngs(0))`."""
    initial = _initial_carry_shape(room, original)
    if initial is None:
        return None
    core, shape = initial
    rngs = cst.Call(attr(room.ctx.ns, "Rngs"), [cst.Arg(cst.Integer("0"))])
    return cst.Call(attr("self", f"{_attribute(room, core)}.initialize_carry"), [cst.Arg(shape), cst.Arg(rngs)])


@NNX_NODES.on_leave(cst.Assign, rule=RULE_CORE)
def nnx_core_use(room: NnxMethod, original: cst.Assign, updated: cst.Assign) -> cst.Assign | None:
    """An unroll -> `self.lstm(xs)` (an `nnx.RNN`); a step -> `state, out = self.lstm(state, x)`."""
    core = _core_of(room, original)
    if core is None:
        _flag_core_problems(room, original)
        return None
    value = updated.value
    assert isinstance(value, cst.Call) and isinstance(original.value, cst.Call)  # an unroll or a step, as read
    if core.unroll is None:
        attribute, output = _nnx_build(room, core, original.value.args[0].value, original)
        outputs = _pair(original)[0]
        if isinstance(outputs, cst.Name):
            room.set_size_after_statement(outputs.value, output)
        return _step(room, original, updated, attr("self", attribute))
    unroll = core.unroll
    bound = _unroll_bound(original, value, room.ctx.names)
    attribute, output = _nnx_build(room, core, unroll.inputs, original)
    initial = bound.get("initial_state") if unroll.initial is not None else None
    call = cst.Call(attr("self", attribute), _rnn_call_args(bound["input_sequence"], initial))
    room.converted(original, RULE_CORE, f"hk unroll -> nnx.RNN (self.{attribute})")
    assert isinstance(unroll.outputs, cst.Name)  # `_is_discarded` and `_read_use` read names
    room.set_size_after_statement(unroll.outputs.value, output)
    return _unroll_assign(updated, unroll, call)


# Functions that keep the feature size, between the cores of an hk.DeepRNN.
ELEMENTWISE_NAMES = {"relu", "gelu", "silu", "swish", "sigmoid", "tanh", "elu", "selu", "softplus", "leaky_relu", "relu6"}
