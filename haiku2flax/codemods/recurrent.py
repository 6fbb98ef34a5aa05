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

from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.calls import BoundCall, Unconvertible, as_tuple, code, convert_construct_call, keyword_arg, literal
from ..engine.context import add_todo_lines, attr, rename_namespace
from ..engine.names import ImportedNames, dotted_name
from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter
from ..engine.tables import Tables
from ..engine.walk import descendants

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
    outputs: cst.BaseAssignTargetExpression
    state: cst.BaseAssignTargetExpression | None  # None: the final state is discarded
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


@dataclass
class MethodCores:
    """What one method does with recurrent cores: the rewriters look nodes up here by id."""

    cores: dict[str, Core] = field(default_factory=dict)
    by_node: dict[int, Core] = field(default_factory=dict)  # constructors, unroll/step assignments, initial states
    dropped: dict[int, Core] = field(default_factory=dict)  # statements that only built a core's zero initial state
    lstm_states: set[str] = field(default_factory=set)  # names holding an LSTM state: `.hidden` / `.cell` read there
    problems: dict[int, str] = field(default_factory=dict)  # unrolls of cores the rule cannot see -> why


def _pair_target(assign: cst.Assign) -> tuple[cst.BaseAssignTargetExpression, cst.BaseAssignTargetExpression] | None:
    if len(assign.targets) != 1 or not isinstance(assign.targets[0].target, cst.Tuple | cst.List):
        return None
    elements = assign.targets[0].target.elements
    return (elements[0].value, elements[1].value) if len(elements) == 2 and not any(isinstance(e, cst.StarredElement) for e in elements) else None


def _is_discarded(target: cst.BaseExpression, uses: dict[str, int]) -> bool:
    return isinstance(target, cst.Name) and (target.value == "_" or uses.get(target.value, 0) <= 1)


def _name_uses(body: cst.CSTNode) -> dict[str, int]:
    """How often each name occurs in `body` (attribute names after a dot are not names)."""
    nodes = list(descendants(body))
    attributes = {id(n.attr) for n in nodes if isinstance(n, cst.Attribute)}
    keywords = {id(n.keyword) for n in nodes if isinstance(n, cst.Arg) and n.keyword is not None}
    uses: dict[str, int] = {}
    for node in nodes:
        if isinstance(node, cst.Name) and id(node) not in attributes and id(node) not in keywords:
            uses[node.value] = uses.get(node.value, 0) + 1
    return uses


def _initial_state_of(node: cst.BaseExpression | None, cores: dict[str, Core]) -> Core | None:
    if isinstance(node, cst.Call) and m.matches(node.func, m.Attribute(m.Name(), m.Name("initial_state"))):
        return cores.get(node.func.value.value)  # type: ignore[attr-defined]
    return None


def read_method(body: cst.BaseSuite, names: ImportedNames, tables: Tables) -> MethodCores:
    """The cores a method body builds at its top level, and whether each is used only in ways Flax can say."""
    found = MethodCores()
    statements = body.body if isinstance(body, cst.IndentedBlock) else ()
    zero_states: dict[str, tuple[Core, cst.BaseStatement]] = {}  # `init = core.initial_state(B)`
    for statement in statements:
        assign = analysis.simple_assign(statement)
        if assign is None or not isinstance(assign[0], cst.Name) or not isinstance(assign[1], cst.Call):
            continue
        api = names.haiku_api(assign[1].func)
        if api in (*CELLS, "DeepRNN"):
            core = found.cores[assign[0].value] = Core(assign[0].value, api, assign[1])  # type: ignore[arg-type]
            core.problem = _constructor_problem(core, names, tables)
            found.by_node[id(assign[1])] = core
        elif _initial_state_of(assign[1], found.cores) is not None:
            zero_states[assign[0].value] = (_initial_state_of(assign[1], found.cores), statement)  # type: ignore[assignment]
    uses = _name_uses(body)
    seen: dict[str, int] = {name: 1 for name in found.cores}  # the assignment itself
    zero_calls = {id(analysis.simple_assign(s)[1]) for _, s in zero_states.values()}  # type: ignore[index]
    for node in descendants(body):
        if isinstance(node, cst.Assign) and isinstance(node.value, cst.Call):
            _read_use(node, found, names, uses, zero_states, seen)
        elif isinstance(node, cst.Call) and id(node) not in found.by_node and id(node) not in zero_calls:
            _count_initial_state(node, found, seen)
    for _, statement in zero_states.values():
        if id(statement) not in found.dropped:
            _count_initial_state(analysis.simple_assign(statement)[1], found, seen)  # type: ignore[index, arg-type]
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
        found.by_node[id(call)] = core
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


def _read_use(assign: cst.Assign, found: MethodCores, names: ImportedNames, uses: dict[str, int], zero_states, seen) -> None:
    """`outs, state = hk.dynamic_unroll(core, ...)` or `out, state = core(x, state)`."""
    call: cst.Call = assign.value  # type: ignore[assignment]
    api = names.haiku_api(call.func)
    pair = _pair_target(assign)
    if api in UNROLL_ARGS:
        try:
            args = BoundCall.bind(call, UNROLL_ARGS[api], f"hk.{api}").args
        except Unconvertible as reason:
            found.problems[id(call)] = str(reason)
            return
        core = found.cores.get(args["core"].value) if isinstance(args.get("core"), cst.Name) else None  # type: ignore[union-attr]
        if core is None:
            found.problems[id(call)] = (
                f"`hk.{api}` unrolls a core this rule cannot see (not an hk.LSTM / GRU / VanillaRNN / DeepRNN built "
                "in this method): make the core a Flax cell and unroll it with `nn.RNN(cell, time_major=True, return_carry=True)`"
            )
            return
        seen[core.name] += 1
        found.by_node[id(assign)] = core
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
            zero, zero_statement = zero_states[initial.value]
        if zero is not None and zero is not core:
            core.problem = f"`{core.name}` starts from another core's initial state"
            return
        if zero is not None:  # Haiku's zero state: Flax's default carry
            seen[core.name] += 1
            if zero_statement is None:
                found.by_node[id(initial)] = core
            else:
                found.dropped[id(zero_statement)] = core
            initial = None
        time_major = args.get("time_major", cst.Name("True"))
        core.unroll = Unroll(args["input_sequence"], pair[0], state, initial, None if literal(time_major) is False else time_major, args.get("unroll"))
    elif isinstance(call.func, cst.Name) and call.func.value in found.cores:
        core = found.cores[call.func.value]
        seen[core.name] += 1
        found.by_node[id(assign)] = core
        positional = [a for a in call.args if a.keyword is None and not a.star]
        if pair is None or len(positional) != 2 or len(call.args) != 2:
            core.problem = f"call `{core.name}(inputs, state)` as `output, state = ...`: a Flax cell returns `(carry, output)`"
            return
        core.steps.append(call)
        if core.step_input is None:
            core.step_input = positional[0].value


def _read_lstm_states(statements, found: MethodCores, names: ImportedNames) -> None:
    """Names holding an LSTM state: from an LSTM's `initial_state`, step or unroll, or `hk.LSTMState(...)`."""
    lstm_cores = {c.name for c in found.cores.values() if c.api == "LSTM" and c.problem is None}
    for node in descendants(cst.IndentedBlock(body=list(statements))):
        if not isinstance(node, cst.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0].target, node.value
        pair = _pair_target(node)
        core = found.by_node.get(id(node))
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
    first, second = _pair_target(assign)  # type: ignore[misc]
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
    if m.matches(batch, m.Subscript(m.Attribute(m.Name(step.value), m.Name("shape")))) and literal(batch.slice[0].slice.value) == 0:  # type: ignore[attr-defined]
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


class _Recurrent(Rewriter):
    """What both targets share: reading each method's cores, LSTM states, unroll results, TODOs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._methods: list[tuple[int, MethodCores]] = []  # (id of the function body, its cores), innermost last

    @property
    def recurrent(self) -> MethodCores | None:
        return self._methods[-1][1] if self._methods else None

    def is_function_body(self, node: cst.IndentedBlock) -> bool:
        raise NotImplementedError

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        if self.is_function_body(node):
            reads = self.ctx.enabled(RULE_CORE) and self.ctx.mentions(*CELLS, "DeepRNN", "unroll", "LSTMState")
            cores = read_method(node, self.ctx.names, self.ctx.tables) if reads else MethodCores()
            self._methods.append((id(node), cores))
        super().visit_IndentedBlock(node)

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        if self._methods and self._methods[-1][0] == id(original):
            self._methods.pop()
        return super().leave_IndentedBlock(original, updated)

    def core_of(self, node: cst.CSTNode) -> Core | None:
        core = self.recurrent.by_node.get(id(node)) if self.recurrent else None
        return core if core is not None and core.problem is None else None

    def is_dropped(self, statement: cst.CSTNode) -> bool:
        """A statement that only built a zero initial state, which Flax's unroll makes itself."""
        core = self.recurrent.dropped.get(id(statement)) if self.recurrent else None
        return core is not None and core.problem is None

    def is_initial_state(self, call: cst.Call, core: Core) -> bool:
        return any(call is c for c in core.initial_states)

    def initial_carry_shape(self, call: cst.Call) -> tuple[Core, cst.BaseExpression] | None:
        """`core.initial_state(batch)`: the core and the input shape Flax's `initialize_carry` takes (else None;
        a TODO where the shape cannot be written)."""
        core = self.core_of(call)
        if core is None or not self.is_initial_state(call, core):
            return None
        try:
            return core, _carry_shape(core, call)
        except Unconvertible as reason:
            self.todo(call, RULE_CORE_USE, str(reason))
            return None

    def flag_core_problems(self, original: cst.Assign) -> None:
        """A TODO on a core's constructor and uses when the rule cannot follow it, or on an unroll of an unknown core."""
        methods = self.recurrent
        if methods is None:
            return
        reason = methods.problems.get(id(original.value))
        core = methods.by_node.get(id(original.value)) or methods.by_node.get(id(original))
        if reason is None and core is not None and core.problem is not None:
            reason = core.problem
        if reason is not None:
            self.todo(original, RULE_CORE_USE, reason)

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if self.ctx.names.haiku_api(original.func) == "LSTMState" and self.ctx.enabled(RULE_LSTM_STATE):
            try:
                state = lstm_state_tuple(updated)
            except Unconvertible as reason:
                self.todo(original, RULE_LSTM_STATE, str(reason))
                return super().leave_Call(original, updated)
            self.converted(original, RULE_LSTM_STATE, "hk.LSTMState(hidden, cell) -> (c, h)")
            return state
        return super().leave_Call(original, updated)

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        methods = self.recurrent
        if (
            methods is not None
            and isinstance(original.value, cst.Name)
            and original.value.value in methods.lstm_states
            and original.attr.value in LSTM_STATE_INDEX
        ):
            self.converted(original, RULE_LSTM_STATE, f"LSTMState.{original.attr.value} -> carry[{LSTM_STATE_INDEX[original.attr.value]}]")
            index = cst.Index(cst.Integer(LSTM_STATE_INDEX[original.attr.value]))
            return cst.Subscript(updated.value, [cst.SubscriptElement(index)])
        return super().leave_Attribute(original, updated)

    def gru_cell(self, call: cst.Call, inputs: tuple[cst.BaseExpression, ...], extra: list[cst.Arg]) -> cst.Call:
        """`hk.GRU(H)` -> `HaikuGRUCell(H)` / `HaikuGRUCell(din, H, rngs=rngs)`; the class is added to the file."""
        args = _cell_args(call, "GRU", self.ctx.tables)
        self.ctx.needed_imports |= {("jax", None, None), ("jax.numpy", None, "jnp")}
        self.ctx.need_target_import()
        return cst.Call(cst.Name(GRU_CELL), [*(cst.Arg(i) for i in inputs), cst.Arg(args["hidden_size"]), *extra])

    def warn_double_bias(self, call: cst.Call) -> None:
        """hk.VanillaRNN's two biases (the default) train differently from SimpleCell's one."""
        double = _cell_args(call, "VanillaRNN", self.ctx.tables).get("double_bias")
        if double is None or literal(double) is not False:
            self.warn(call, RULE_CORE, "Haiku's two biases become SimpleCell's one (their sum): the same function, "
                      "but under SGD Haiku's sum moved twice as fast")


class RecurrentFile(Rewriter):
    """File level, both targets: the `HaikuGRUCell` class once, before its first user; `hk.RNNCore` subclasses flagged."""

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        updated = super().leave_Module(original, updated)
        body = list(updated.body)
        core_classes = {
            s.name.value
            for s in original.body
            if isinstance(s, cst.ClassDef) and any(self.ctx.names.haiku_api(b.value) == "RNNCore" for b in s.bases)
        }
        if core_classes and self.ctx.enabled(RULE_CORE_CLASS):
            reason = CORE_CLASS_REASON.format(ns=self.ctx.ns, carry_args=CARRY_ARGS[self.ctx.target])
            for statement in original.body:
                if isinstance(statement, cst.ClassDef) and statement.name.value in core_classes:
                    self.ctx.notes.todo(statement, RULE_CORE_CLASS, reason)
            body = [
                add_todo_lines(s, [(RULE_CORE_CLASS, reason)]) if isinstance(s, cst.ClassDef) and s.name.value in core_classes else s
                for s in body
            ]
        defined = any(isinstance(s, cst.ClassDef) and s.name.value == GRU_CELL for s in body)
        used = self.ctx.mentions("GRU") and any(isinstance(n, cst.Call) and m.matches(n.func, m.Name(GRU_CELL)) for n in descendants(updated))
        if used and not defined:
            cell = rename_namespace(cst.parse_module(GRU_CELL_SOURCE[self.ctx.target]).body[0], self.ctx.ns)
            at = next((i for i, s in enumerate(body) if isinstance(s, cst.ClassDef | cst.FunctionDef)), len(body))
            body.insert(at, cell.with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()] if at else []))
        return updated.with_changes(body=body)


class LinenRecurrent(_Recurrent):
    """Linen: the core stays a local (`core = nn.LSTMCell(H)`); unrolls become `nn.RNN(core, ...)(xs)`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._function_bodies: set[int] = set()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool | None:
        self._function_bodies.add(id(node.body))
        return super().visit_FunctionDef(node)

    def is_function_body(self, node: cst.IndentedBlock) -> bool:
        return id(node) in self._function_bodies

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
        if self.is_dropped(original):
            return cst.RemoveFromParent()
        return super().leave_SimpleStatementLine(original, updated)

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        core = self.core_of(original)
        if core is not None and original is core.constructor:
            return self._cell(original, updated, core)
        initial = self.initial_carry_shape(original)
        if initial is not None:
            core, shape = initial
            self.ctx.needed_imports.add(("jax", None, None))
            key = cst.parse_expression("jax.random.key(0)")
            return cst.Call(cst.Attribute(cst.Name(core.name), cst.Name("initialize_carry")), [cst.Arg(key), cst.Arg(shape)])
        return super().leave_Call(original, updated)

    def _cell(self, original: cst.Call, updated: cst.Call, core: Core) -> cst.BaseExpression:
        """GRU and DeepRNN (LSTM and VanillaRNN are table layers, which the converter rewrites itself)."""
        try:
            if core.api == "GRU":
                cell = self.gru_cell(updated, (), [])
            else:
                cell = self._deep_rnn(original, updated, core)
        except Unconvertible as reason:
            self.todo(original, RULE_CORE, str(reason))
            return updated
        self.mark_builds_layer()  # type: ignore[attr-defined]
        self.converted(original, RULE_CORE, f"hk.{core.api} -> {code(cell.func)}")
        return cell

    def _deep_rnn(self, original: cst.Call, updated: cst.Call, core: Core) -> cst.Call:
        layers = _deep_rnn_layers(original, updated, self.ctx.names)
        unroll = core.unroll
        assert unroll is not None
        wrapped = []
        for old, new, is_core in layers:
            if is_core and self.ctx.names.haiku_api(old.func) == "GRU":  # type: ignore[attr-defined]
                new = self.gru_cell(new, (), [])  # type: ignore[arg-type]
            wrapped.append(cst.Element(cst.Call(attr(self.ctx.ns, "RNN"), [cst.Arg(new), *_rnn_args(unroll)]) if is_core else new))
        self.ctx.need_target_import()
        return cst.Call(attr(self.ctx.ns, "Sequential"), [cst.Arg(cst.List(wrapped))])

    def leave_Assign(self, original: cst.Assign, updated: cst.Assign) -> cst.BaseSmallStatement:
        core = self.core_of(original)
        if core is None:
            self.flag_core_problems(original)
            built = self.core_of(original.value)
            if built is not None and built.api == "VanillaRNN":
                self.warn_double_bias(original.value)  # type: ignore[arg-type]
            return super().leave_Assign(original, updated)
        value: cst.Call = updated.value  # type: ignore[assignment]
        if core.unroll is not None:
            unroll = core.unroll
            bound = BoundCall.bind(value, UNROLL_ARGS[self.ctx.names.haiku_api(original.value.func)], "unroll").args  # type: ignore[attr-defined]
            initial = bound.get("initial_state") if unroll.initial is not None else None
            self.ctx.need_target_import()
            self.mark_builds_layer()  # type: ignore[attr-defined]
            if core.api == "DeepRNN":
                rnn: cst.BaseExpression = cst.Name(core.name)
            else:
                rnn = cst.Call(attr(self.ctx.ns, "RNN"), [cst.Arg(cst.Name(core.name)), *_rnn_args(unroll)])
            call = cst.Call(rnn, _rnn_call_args(bound["input_sequence"], initial))
            self.converted(original, RULE_CORE, f"hk unroll -> {self.ctx.ns}.RNN")
            return _unroll_assign(updated, unroll, call)
        step_input, state = (a.value for a in value.args)
        self.converted(original, RULE_CORE, "core(inputs, state) -> cell(carry, inputs)")
        return updated.with_changes(
            targets=[cst.AssignTarget(_swapped_pair(updated))], value=value.with_changes(args=[cst.Arg(state), cst.Arg(step_input)])
        )


def _unroll_assign(updated: cst.Assign, unroll: Unroll, call: cst.Call) -> cst.Assign:
    """`outs, state = <unroll>` -> `state, outs = <rnn>` (or `outs = <rnn>` when the state is discarded)."""
    if unroll.state is None:
        outputs = _pair_target(updated)[0]  # type: ignore[index]
        return updated.with_changes(targets=[cst.AssignTarget(outputs)], value=call)
    return updated.with_changes(targets=[cst.AssignTarget(_swapped_pair(updated))], value=call)


def _deep_rnn_layers(original: cst.Call, updated: cst.Call, names: ImportedNames) -> list[tuple[cst.BaseExpression, cst.BaseExpression, bool]]:
    """(Haiku layer, converted layer, is a core) for each layer of `hk.DeepRNN([...])`."""
    old_args = BoundCall.bind(original, DEEP_RNN_ARGS, "hk.DeepRNN").args
    new_args = BoundCall.bind(updated, DEEP_RNN_ARGS, "hk.DeepRNN").args
    if not isinstance(old_args.get("layers"), cst.List | cst.Tuple) or any(isinstance(e, cst.StarredElement) for e in old_args["layers"].elements):  # type: ignore[union-attr]
        raise Unconvertible("`hk.DeepRNN` needs a literal list of layers to be converted")
    layers = []
    for old, new in zip(old_args["layers"].elements, new_args["layers"].elements, strict=True):  # type: ignore[union-attr]
        is_call = isinstance(old.value, cst.Call)
        api = names.haiku_api(old.value.func) if is_call else None  # type: ignore[union-attr]
        if is_call and api not in CELLS:
            raise Unconvertible(f"`hk.DeepRNN` layer `{code(old.value)}`: only hk.LSTM, GRU and VanillaRNN cores (and functions) convert")
        layers.append((old.value, new.value, api is not None))
    return layers


class NnxRecurrent(_Recurrent):
    """NNX (a mixin of the method rewriter): the core is built in `__init__` (`self.lstm`), wrapped in
    `nnx.RNN` when it is unrolled; its statement leaves the method."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._attributes: dict[str, str] = {}  # core name -> attribute
        self._built: set[str] = set()
        self._pending_sizes: dict[str, cst.BaseExpression | None] = {}  # tuple-assigned names: known after the statement

    def is_function_body(self, node: cst.IndentedBlock) -> bool:
        return not self._methods  # the rewriter visits one method's body, and no FunctionDef

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
        result = super().leave_SimpleStatementLine(original, updated)
        self.sizes.update(self._pending_sizes)  # type: ignore[attr-defined]
        self._pending_sizes.clear()
        assign = analysis.simple_assign(original)
        core = self.core_of(assign[1]) if assign is not None else None
        if self.is_dropped(original) or (core is not None and assign[1] is core.constructor):  # type: ignore[index]
            return cst.RemoveFromParent()
        return result

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        super().visit_SimpleStatementLine(node)
        assign = analysis.simple_assign(node)
        core = self.core_of(assign[1]) if assign is not None else None
        if core is not None and assign[1] is core.constructor and not self.can_hoist([a.value for a in core.constructor.args], node):  # type: ignore[index, attr-defined]
            core.problem = f"`{core.name}` cannot be built in `__init__`"  # can_hoist left the TODO saying why

    def _attribute(self, core: Core) -> str:
        if core.name not in self._attributes:
            self._attributes[core.name] = self.new_attribute(analysis.snake_case(core.api), analysis.explicit_name(core.constructor))  # type: ignore[attr-defined]
        return self._attributes[core.name]

    def _cell(self, constructor: cst.Call, api: str, size: cst.BaseExpression) -> cst.Call:
        if api == "GRU":
            return self.gru_cell(constructor, (size,), [keyword_arg("rngs", cst.Name("rngs"))])
        if api == "VanillaRNN":
            self.warn_double_bias(constructor)
        construct = self.ctx.tables.get(api)
        return convert_construct_call(constructor, construct, "nnx", self.ctx.ns, (size,), {"rngs": cst.Name("rngs")}, ctx=self.ctx)  # type: ignore[arg-type]

    def _build(self, core: Core, inputs: cst.BaseExpression, node: cst.CSTNode) -> tuple[str, cst.BaseExpression | None]:
        """Build the core in `__init__` (once) for its first input: (attribute, output feature size)."""
        attribute = self._attribute(core)
        size = self.state.input_size(attribute, self.size_of(inputs), self, node)  # type: ignore[attr-defined]
        if core.api == "DeepRNN":
            built, output = self._deep_rnn(core, size, attribute, node)
        else:
            cell = self._cell(core.constructor, core.api, size)
            built = cell if core.unroll is None else cst.Call(attr(self.ctx.ns, "RNN"), [cst.Arg(cell), *_rnn_args(core.unroll)])
            output = _cell_args(core.constructor, core.api, self.ctx.tables)["hidden_size"]
        if core.name not in self._built:
            self._built.add(core.name)
            self.add_to_init(attribute, built, core.constructor, needs_rngs=True)  # type: ignore[attr-defined]
            self.converted(core.constructor, RULE_CORE, f"hk.{core.api} -> {code(built.func)} (self.{attribute})")
        return attribute, output

    def _deep_rnn(self, core: Core, size: cst.BaseExpression, attribute: str, node: cst.CSTNode) -> tuple[cst.Call, cst.BaseExpression | None]:
        """`nnx.Sequential(nnx.RNN(cell), fn, ...)`, each cell sized by what the layers before it output."""
        layers: list[cst.Arg] = []
        current: cst.BaseExpression | None = size
        for layer, _, is_core in _deep_rnn_layers(core.constructor, core.constructor, self.ctx.names):
            if not is_core:
                layers.append(cst.Arg(layer))
                if (dotted_name(layer) or "").rsplit(".", 1)[-1] not in ELEMENTWISE_NAMES:
                    current = None  # a function that may change the size
                continue
            api = self.ctx.names.haiku_api(layer.func)  # type: ignore[attr-defined]
            layer_size = current if current is not None else self.state.input_size(f"{attribute}_{len(layers)}", None, self, node)  # type: ignore[attr-defined]
            cell = self._cell(layer, api, layer_size)  # type: ignore[arg-type]
            layers.append(cst.Arg(cst.Call(attr(self.ctx.ns, "RNN"), [cst.Arg(cell), *_rnn_args(core.unroll)])))  # type: ignore[arg-type]
            current = _cell_args(layer, api, self.ctx.tables)["hidden_size"]  # type: ignore[arg-type]
        return cst.Call(attr(self.ctx.ns, "Sequential"), layers), current

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        initial = self.initial_carry_shape(original)
        if initial is not None:
            core, shape = initial
            rngs = cst.Call(attr(self.ctx.ns, "Rngs"), [cst.Arg(cst.Integer("0"))])
            return cst.Call(attr("self", f"{self._attribute(core)}.initialize_carry"), [cst.Arg(shape), cst.Arg(rngs)])
        return super().leave_Call(original, updated)

    def leave_Assign(self, original: cst.Assign, updated: cst.Assign) -> cst.BaseSmallStatement:
        core = self.core_of(original)
        if core is None:
            self.flag_core_problems(original)
            return super().leave_Assign(original, updated)
        value: cst.Call = updated.value  # type: ignore[assignment]
        if core.unroll is not None:
            unroll = core.unroll
            bound = BoundCall.bind(value, UNROLL_ARGS[self.ctx.names.haiku_api(original.value.func)], "unroll").args  # type: ignore[attr-defined]
            attribute, output = self._build(core, unroll.inputs, original)
            initial = bound.get("initial_state") if unroll.initial is not None else None
            call = cst.Call(attr("self", attribute), _rnn_call_args(bound["input_sequence"], initial))
            self.converted(original, RULE_CORE, f"hk unroll -> nnx.RNN (self.{attribute})")
            self._pending_sizes[unroll.outputs.value] = output  # type: ignore[attr-defined]
            return _unroll_assign(updated, unroll, call)
        step_input, state = (a.value for a in value.args)
        attribute, output = self._build(core, original.value.args[0].value, original)  # type: ignore[attr-defined]
        self.converted(original, RULE_CORE, "core(inputs, state) -> cell(carry, inputs)")
        outputs = _pair_target(original)[0]  # type: ignore[index]
        if isinstance(outputs, cst.Name):
            self._pending_sizes[outputs.value] = output
        call = cst.Call(attr("self", attribute), [cst.Arg(state), cst.Arg(step_input)])
        return updated.with_changes(targets=[cst.AssignTarget(_swapped_pair(updated))], value=call)


# Functions that keep the feature size, between the cores of an hk.DeepRNN.
ELEMENTWISE_NAMES = {"relu", "gelu", "silu", "swish", "sigmoid", "tanh", "elu", "selu", "softplus", "leaky_relu", "relu6"}
