"""Random, valid, ordinary-looking Haiku programs from a seed, composed from the idioms of real code.

A program is drawn along independent axes, each choice recorded as an idiom (`axis:choice`) so that
rates can be reported per idiom:

- structure: a plain function, one module, or a module of submodules (sizes passed as constructor
  arguments, `**kwargs`, `name` by keyword or by position, subclasses of Haiku layers);
- place: where each layer is built (inline in the call, in `__init__`, in a local called later, in
  loops over configuration, under conditions on constructor state or call arguments, in lists, in
  `hk.Sequential`);
- layer: which layers (the table layers, dropout, BatchNorm with state, parameters and state by hand,
  recurrent cores with unrolls, attention, `hk.scan`, `layer_stack`, `hk.vmap`, `hk.remat`, `hk.cond`);
- transform: how the model is transformed (module level, in a factory, decorated, `without_apply_rng`,
  `transform_with_state`, or a bare function that the caller transforms);
- init and train: whether `init` runs in the file, in another file or nowhere, and the training code
  around it (jax.grad with a tree_map SGD step, optax, a Flax TrainState).

The generator knows the shapes it builds, so it writes the example input specs and call arguments
alongside the source; nothing is parsed back out of the text.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

BATCH = 2
# Few distinct sizes: eager JAX compiles each operation once per shape, and a run of many programs in one
# process reuses those compilations. Sizes within a program still differ, so transposed kernels show.
WIDTHS = [4, 6, 8]
ACTIVATIONS = ["jax.nn.relu", "jax.nn.gelu", "jnp.tanh", "jax.nn.silu", "jax.nn.sigmoid"]
MODEL_NAMES = ["model", "net", "network", "transformed"]
CLASS_NAMES = ["Model", "Net", "Classifier", "Encoder", "Tower", "Policy"]
BLOCK_NAMES = ["Block", "Layer", "Stage", "Unit", "Residual", "Mixer"]
FLAG_NAMES = ["is_training", "training"]


@dataclass
class Program:
    """One generated program and what `verify` needs to run it."""

    seed: int
    source: str
    entry: str
    inputs: list[str]
    args: dict[str, object]
    train_args: dict[str, object] | None
    idioms: list[str]
    other_files: dict[str, str] = field(default_factory=dict)  # file name -> source (e.g. train.py)
    method_inputs: dict[str, list[str]] = field(default_factory=dict)  # multi_transform methods' own inputs


@dataclass(frozen=True)
class Shape:
    """The per-example shape of the value flowing through the model (the batch axis is implicit)."""

    kind: str  # "vector" (D,), "image" (H, W, C), "sequence" (T, D), "tokens" (T,) of ints
    dims: tuple[int, ...]

    @property
    def last(self) -> int:
        return self.dims[-1]

    def with_last(self, size: int) -> Shape:
        return Shape(self.kind, (*self.dims[:-1], size))


class _Scope:
    """The body being written: a module class (with `__init__` and ctor parameters) or a function."""

    def __init__(self, gen: _Generator, is_class: bool) -> None:
        self.gen = gen
        self.is_class = is_class
        self.ctor: dict[str, str] = {}  # ctor parameter -> the literal its caller passes
        self.init_lines: list[str] = []  # after super().__init__
        self.hoisted: list[str] = []  # locals built at the top of the call, called later
        self.body: list[str] = []
        self.call_params: list[str] = []  # extra call parameters with defaults ("apply_head=True")
        self.used: dict[str, int] = {}
        self.kwargs = False  # the class's constructor passes **kwargs on (so `name` goes by keyword)

    def name(self, hint: str) -> str:
        count = self.used.get(hint, 0)
        self.used[hint] = count + 1
        return hint if count == 0 else f"{hint}_{count}"

    def size(self, value: int, hint: str) -> str:
        """A size as a literal or, in a class, sometimes as a constructor argument (`self.hidden`)."""
        if self.is_class and self.gen.rng.random() < 0.4:
            param = self.name(hint)
            self.ctor[param] = repr(value)
            self.gen.idiom("size:ctor_arg")
            return f"self.{param}"
        return str(value)

    def place(self, ctor: str, hint: str) -> str:
        """Where the layer `ctor` is built; returns the expression that calls it."""
        options = ["inline", "inline", "local"] + (["init", "init"] if self.is_class else [])
        where = self.gen.pick("place", options)
        if where == "inline":
            return ctor
        name = self.name(hint)
        if where == "local":
            self.hoisted.append(f"{name} = {ctor}")
            return name
        self.init_lines.append(f"self.{name} = {ctor}")
        return f"self.{name}"


class _Generator:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.idioms: set[str] = set()
        self.classes: list[str] = []  # module-level class definitions, in order
        self.class_names: set[str] = set()
        self.flag: str | None = None
        self.needs_state = False
        self.needs_rng = False

    # --- choices -------------------------------------------------------------------------------
    def idiom(self, name: str) -> None:
        self.idioms.add(name)

    def pick(self, axis: str, options: list[str]) -> str:
        choice = self.rng.choice(options)
        self.idiom(f"{axis}:{choice}")
        return choice

    def chance(self, axis: str, probability: float) -> bool:
        if self.rng.random() < probability:
            self.idiom(axis)
            return True
        return False

    def width(self) -> int:
        return self.rng.choice(WIDTHS)

    def class_name(self, options: list[str]) -> str:
        base = self.rng.choice(options)
        name, n = base, 1
        while name in self.class_names:
            n += 1
            name = f"{base}{n}"
        self.class_names.add(name)
        return name

    def flag_arg(self) -> str:
        """How the training flag is passed on: positionally or by keyword."""
        if self.rng.random() < 0.5:
            return f"{self.flag}={self.flag}"
        return self.flag

    # --- layers --------------------------------------------------------------------------------
    def layer_options(self, shape: Shape) -> list[str]:
        common = ["activation", "layer_norm"] + (["dropout", "batch_norm"] if self.flag else [])
        if shape.kind == "tokens":
            return ["embed"]
        if shape.kind == "vector":
            return common + [
                "linear", "linear", "linear", "residual", "get_parameter", "get_state", "sequential",
                "loop", "if_ctor", "if_call_arg", "mlp", "vmap", "remat", "cond", "layer_stack", "subclass",
            ]
        if shape.kind == "image":
            options = common + ["conv2d", "conv2d", "flatten", "global_mean"]
            return options + (["pool"] if min(shape.dims[:2]) >= 4 else [])
        return common + ["linear", "conv1d", "lstm", "gru", "attention", "scan", "sequence_mean", "flatten"]

    def add_layer(self, scope: _Scope, shape: Shape) -> Shape:
        kind = self.pick("layer", self.layer_options(shape))
        if kind in ("if_ctor", "if_call_arg", "loop") and not scope.is_class:
            kind = "linear"  # these read constructor state or call parameters of a module
        return getattr(self, f"layer_{kind}")(scope, shape)

    def layer_activation(self, scope: _Scope, shape: Shape) -> Shape:
        scope.body.append(f"x = {self.rng.choice(ACTIVATIONS)}(x)")
        return shape

    def linear_ctor(self, scope: _Scope, size: str) -> str:
        extra = self.rng.choice(["", "", "", ", with_bias=False", ", w_init=hk.initializers.TruncatedNormal(0.1)"])
        if extra:
            self.idiom("arg:linear_options")
        if self.chance("arg:layer_name", 0.2):
            extra += f', name="{scope.name("proj")}"'
        return f"hk.Linear({size}{extra})"

    def layer_linear(self, scope: _Scope, shape: Shape) -> Shape:
        width = self.width()
        call = scope.place(self.linear_ctor(scope, scope.size(width, "hidden")), "linear")
        scope.body.append(f"x = {call}(x)")
        return shape.with_last(width)

    def layer_residual(self, scope: _Scope, shape: Shape) -> Shape:
        call = scope.place(f"hk.Linear({shape.last})", "skip")
        scope.body.append(f"x = x + {self.rng.choice(ACTIVATIONS)}({call}(x))")
        return shape

    def layer_layer_norm(self, scope: _Scope, shape: Shape) -> Shape:
        ctor = self.rng.choice(
            [
                "hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)",
                "hk.LayerNorm(-1, True, True)",
                "hk.LayerNorm(axis=-1, create_scale=True, create_offset=False, eps=1e-6)",
            ]
        )
        scope.body.append(f"x = {scope.place(ctor, 'norm')}(x)")
        return shape

    def layer_batch_norm(self, scope: _Scope, shape: Shape) -> Shape:
        self.needs_state = True
        ctor = self.rng.choice(
            [
                "hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.9)",
                "hk.BatchNorm(True, True, 0.99)",
            ]
        )
        flag = self.flag if self.rng.random() < 0.5 else f"is_training={self.flag}"
        scope.body.append(f"x = {scope.place(ctor, 'bn')}(x, {flag})")
        return shape

    def layer_dropout(self, scope: _Scope, shape: Shape) -> Shape:
        self.needs_rng = True
        rate = self.rng.choice(["0.1", "0.2", "0.5"])
        if self.pick("dropout", ["if", "conditional_rate"]) == "if":
            scope.body += [f"if {self.flag}:", f"    x = hk.dropout(hk.next_rng_key(), {rate}, x)"]
        else:
            scope.body.append(f"x = hk.dropout(hk.next_rng_key(), {rate} if {self.flag} else 0.0, x)")
        return shape

    def layer_get_parameter(self, scope: _Scope, shape: Shape) -> Shape:
        name = scope.name("scale")
        init = self.rng.choice(["jnp.ones", "hk.initializers.Constant(1.0)", "hk.initializers.RandomNormal(0.1)"])
        scope.body += [f'{name} = hk.get_parameter("{name}", [{shape.last}], init={init})', f"x = x * {name}"]
        return shape

    def layer_get_state(self, scope: _Scope, shape: Shape) -> Shape:
        self.needs_state = True
        if self.pick("state", ["counter", "running_mean"]) == "counter":
            name = scope.name("counter")
            scope.body += [
                f'{name} = hk.get_state("{name}", [], dtype=jnp.int32, init=jnp.zeros)',
                f'hk.set_state("{name}", {name} + 1)',
            ]
            return shape
        name = scope.name("mean")
        scope.body += [
            f'{name} = hk.get_state("{name}", [{shape.last}], init=jnp.zeros)',
            f'hk.set_state("{name}", 0.9 * {name} + 0.1 * jnp.mean(x, axis=0))',
            f"x = x - {name}",
        ]
        return shape

    def layer_sequential(self, scope: _Scope, shape: Shape) -> Shape:
        widths = [self.width() for _ in range(self.rng.randint(2, 3))]
        parts = []
        for w in widths:
            parts += [f"hk.Linear({w})", self.rng.choice(ACTIVATIONS)]
        call = scope.place(f"hk.Sequential([{', '.join(parts[:-1])}])", "mlp")
        scope.body.append(f"x = {call}(x)")
        return shape.with_last(widths[-1])

    def layer_mlp(self, scope: _Scope, shape: Shape) -> Shape:
        widths = [self.width() for _ in range(self.rng.randint(2, 3))]
        final = ", activate_final=True" if self.chance("arg:mlp_activate_final", 0.3) else ""
        call = scope.place(f"hk.nets.MLP({widths}{final})", "mlp")
        scope.body.append(f"x = {call}(x)")
        return shape.with_last(widths[-1])

    def layer_loop(self, scope: _Scope, shape: Shape) -> Shape:
        widths = [self.width() for _ in range(self.rng.randint(2, 3))]
        param = scope.name("widths")
        scope.ctor[param] = repr(tuple(widths))
        act = self.rng.choice(ACTIVATIONS)
        if self.pick("loop", ["call", "list_in_init"]) == "call":
            scope.body += [f"for width in self.{param}:", f"    x = {act}(hk.Linear(width)(x))"]
        else:
            layers = scope.name("layers")
            scope.init_lines.append(f"self.{layers} = [hk.Linear(width) for width in {param}]")
            scope.body += [f"for layer in self.{layers}:", f"    x = {act}(layer(x))"]
        return shape.with_last(widths[-1])

    def layer_if_ctor(self, scope: _Scope, shape: Shape) -> Shape:
        param = scope.name(self.rng.choice(["use_norm", "normalize"]))
        scope.ctor[param] = self.rng.choice(["True", "False"])
        scope.body += [f"if self.{param}:", "    x = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)"]
        return shape

    def layer_if_call_arg(self, scope: _Scope, shape: Shape) -> Shape:
        param = scope.name("project")
        scope.call_params.append(f"{param}=True")
        scope.body += [f"if {param}:", f"    x = hk.Linear({shape.last})(x)"]
        return shape

    def layer_vmap(self, scope: _Scope, shape: Shape) -> Shape:
        width = self.width()
        layer = scope.name("row_proj")  # built outside: modules created inside hk.vmap are named unreliably
        scope.body += [f"{layer} = hk.Linear({width})", f"x = hk.vmap(lambda row: {layer}(row), split_rng=False)(x)"]
        return shape.with_last(width)

    def layer_remat(self, scope: _Scope, shape: Shape) -> Shape:
        width = self.width()
        fn = scope.name("block")
        scope.body += [
            f"def {fn}(y):",
            f"    return {self.rng.choice(ACTIVATIONS)}(hk.Linear({width})(y))",
            f"x = hk.remat({fn})(x)",
        ]
        return shape.with_last(width)

    def layer_cond(self, scope: _Scope, shape: Shape) -> Shape:
        layer = scope.name("branch")
        scope.body += [  # Haiku cannot create parameters inside a cond branch: the layer runs once before
            f"{layer} = hk.Linear({shape.last})",
            f"x = {layer}(x)",
            f"x = hk.cond(jnp.mean(x) > 0, lambda y: {layer}(y), lambda y: {self.rng.choice(ACTIVATIONS)}(y), x)",
        ]
        return shape

    def layer_layer_stack(self, scope: _Scope, shape: Shape) -> Shape:
        fn = scope.name("layer_fn")
        scope.body += [
            f"def {fn}(y):",
            f"    return y + {self.rng.choice(ACTIVATIONS)}(hk.Linear({shape.last})(y))",
            f"x = hk.experimental.layer_stack({self.rng.randint(2, 3)})({fn})(x)",
        ]
        return shape

    def layer_subclass(self, scope: _Scope, shape: Shape) -> Shape:
        width = self.width()
        name = self.class_name(["ScaledLinear", "GatedLinear"])
        self.classes.append(
            "\n".join(
                [
                    f"class {name}(hk.Linear):",
                    f'    """hk.Linear with its output {"scaled" if name.startswith("Scaled") else "gated"}."""',
                    "",
                    "    def __call__(self, inputs):",
                    "        out = super().__call__(inputs)",
                    "        return out * 0.5" if name.startswith("Scaled") else "        return out * jax.nn.sigmoid(out)",
                ]
            )
        )
        call = scope.place(f"{name}({scope.size(width, 'hidden')})", "scaled")
        scope.body.append(f"x = {call}(x)")
        return shape.with_last(width)

    def layer_conv2d(self, scope: _Scope, shape: Shape) -> Shape:
        height, width, _ = shape.dims
        channels = self.width()
        stride = self.rng.choice([1, 1, 2]) if min(height, width) >= 4 else 1
        padding = self.rng.choice(["SAME", "VALID"]) if min(height, width) >= 5 else "SAME"
        kernel = self.rng.choice([3, "(3, 3)", 1])
        ksize = 1 if kernel == 1 else 3
        args = f"{scope.size(channels, 'channels')}, kernel_shape={kernel}"
        args += f", stride={stride}" if stride != 1 or self.rng.random() < 0.3 else ""
        args += f', padding="{padding}"' if padding != "SAME" or self.rng.random() < 0.3 else ""
        scope.body.append(f"x = {scope.place(f'hk.Conv2D({args})', 'conv')}(x)")

        def out(n: int) -> int:
            return -(-n // stride) if padding == "SAME" else -(-(n - ksize + 1) // stride)

        return Shape("image", (out(height), out(width), channels))

    def layer_pool(self, scope: _Scope, shape: Shape) -> Shape:
        fn = self.pick("pool", ["max_pool", "avg_pool", "MaxPool"])
        if fn == "MaxPool":
            ctor = 'hk.MaxPool(window_shape=2, strides=2, padding="VALID")'
            scope.body.append(f"x = {scope.place(ctor, 'pool')}(x)")
        else:
            scope.body.append(f'x = hk.{fn}(x, window_shape=(1, 2, 2, 1), strides=(1, 2, 2, 1), padding="VALID")')
        height, width, channels = shape.dims
        return Shape("image", (height // 2, width // 2, channels))

    def layer_flatten(self, scope: _Scope, shape: Shape) -> Shape:
        how = self.pick("flatten", ["hk.Flatten", "reshape_method", "jnp.reshape"])
        if how == "hk.Flatten":
            scope.body.append("x = hk.Flatten()(x)")
        elif how == "reshape_method":
            scope.body.append("x = x.reshape((x.shape[0], -1))")
        else:
            scope.body.append("x = jnp.reshape(x, (x.shape[0], -1))")
        size = 1
        for d in shape.dims:
            size *= d
        return Shape("vector", (size,))

    def layer_global_mean(self, scope: _Scope, shape: Shape) -> Shape:
        scope.body.append("x = jnp.mean(x, axis=(1, 2))")
        return Shape("vector", (shape.last,))

    def layer_sequence_mean(self, scope: _Scope, shape: Shape) -> Shape:
        scope.body.append("x = jnp.mean(x, axis=1)")
        return Shape("vector", (shape.last,))

    def layer_embed(self, scope: _Scope, shape: Shape) -> Shape:
        dim = self.width()
        ctor = self.rng.choice([f"hk.Embed(vocab_size={self.vocab}, embed_dim={dim})", f"hk.Embed({self.vocab}, {dim})"])
        scope.body.append(f"x = {scope.place(ctor, 'embed')}(x)")
        return Shape("sequence", (shape.dims[0], dim))

    def layer_conv1d(self, scope: _Scope, shape: Shape) -> Shape:
        channels = self.width()
        ctor = f"hk.Conv1D({scope.size(channels, 'channels')}, kernel_shape={self.rng.choice([1, 3])})"
        scope.body.append(f"x = {scope.place(ctor, 'conv')}(x)")
        return shape.with_last(channels)

    def recurrent(self, scope: _Scope, shape: Shape, core_type: str) -> Shape:
        hidden = self.width()
        core = scope.name("core")
        ctor = f"hk.{core_type}({hidden})"
        if scope.is_class and self.rng.random() < 0.4:
            self.idiom("place:init")
            scope.init_lines.append(f"self.{core} = {ctor}")
            core = f"self.{core}"
        else:
            scope.body.append(f"{core} = {ctor}")
        unroll = self.pick("unroll", ["dynamic_unroll", "static_unroll", "time_major"])
        scope.body.append(f"state = {core}.initial_state(x.shape[0])")
        if unroll == "time_major":
            scope.body += [
                f"x, _ = hk.dynamic_unroll({core}, jnp.swapaxes(x, 0, 1), state)",
                "x = jnp.swapaxes(x, 0, 1)",
            ]
        else:
            scope.body.append(f"x, _ = hk.{unroll}({core}, x, state, time_major=False)")
        return shape.with_last(hidden)

    def layer_lstm(self, scope: _Scope, shape: Shape) -> Shape:
        return self.recurrent(scope, shape, "LSTM")

    def layer_gru(self, scope: _Scope, shape: Shape) -> Shape:
        return self.recurrent(scope, shape, "GRU")

    def layer_attention(self, scope: _Scope, shape: Shape) -> Shape:
        heads, key_size = self.rng.choice([1, 2]), self.rng.choice([4, 8])
        model_size = f", model_size={shape.last}" if self.chance("arg:attention_model_size", 0.5) else ""
        ctor = f"hk.MultiHeadAttention(num_heads={heads}, key_size={key_size}{model_size}, w_init=hk.initializers.VarianceScaling(1.0))"
        attention = scope.place(ctor, "attention")
        if self.chance("attention:residual", 0.5) and model_size:
            scope.body.append(f"x = x + {attention}(x, x, x)")
        else:
            scope.body.append(f"x = {attention}(x, x, x)")
        return shape.with_last(shape.last if model_size else heads * key_size)

    def layer_scan(self, scope: _Scope, shape: Shape) -> Shape:
        hidden = self.width()
        step, inp, rec = scope.name("step"), scope.name("input_proj"), scope.name("recurrent_proj")
        scope.body += [
            f"{inp} = hk.Linear({hidden})",
            f"{rec} = hk.Linear({hidden}, with_bias=False)",
            "",
            f"def {step}(carry, x_t):",
            f"    carry = jnp.tanh({inp}(x_t) + {rec}(carry))",
            "    return carry, carry",
            "",
            f"_, x = hk.scan({step}, jnp.zeros((x.shape[0], {hidden})), jnp.swapaxes(x, 0, 1))",
            "x = jnp.swapaxes(x, 0, 1)",
        ]
        return shape.with_last(hidden)

    # --- modules -------------------------------------------------------------------------------
    def fill(self, scope: _Scope, shape: Shape, count: int) -> Shape:
        for _ in range(count):
            shape = self.add_layer(scope, shape)
        return shape

    def call_params(self, scope: _Scope) -> str:
        params = ["self", "x"] if scope.is_class else ["x"]
        if self.flag:
            params.append(f"{self.flag}: bool" if self.rng.random() < 0.5 else self.flag)
        return ", ".join(params + scope.call_params)

    def call_of(self, callee: str) -> str:
        return f"{callee}(x, {self.flag_arg()})" if self.flag else f"{callee}(x)"

    def write_class(self, name: str, scope: _Scope, methods: list[tuple[str, list[str]]] | None = None) -> str:
        """The class text; its constructor takes the scope's parameters (sizes, widths, switches).

        `methods` (name, body) default to one `__call__` running the scope's body.
        """
        kwargs = self.pick("ctor_name", ["name_none", "name_none", "kwargs"])
        scope.kwargs = kwargs == "kwargs"
        params = ["self", *scope.ctor] + (["**kwargs"] if kwargs == "kwargs" else ["name=None"])
        article = "The" if name[0] in "AEIOU" else self.rng.choice(["A", "One", "The"])
        lines = [f"class {name}(hk.Module):", f'    """{article} {name.lower()} of the model."""', ""]
        lines.append(f"    def __init__({', '.join(params)}):")
        lines.append("        super().__init__(**kwargs)" if kwargs == "kwargs" else "        super().__init__(name=name)")
        lines += [f"        self.{p} = {p}" for p in scope.ctor]
        lines += [f"        {line}" for line in scope.init_lines]
        for method, body in methods or [("__call__", [*scope.hoisted, *scope.body, "return x"])]:
            lines += ["", f"    def {method}({self.call_params(scope)}):"]
            lines += [f"        {line}" if line else "" for line in body]
        return "\n".join(lines)

    def instantiate(self, name: str, scope: _Scope, instance: str | None) -> str:
        """`Block(16, name="encoder")`: constructor arguments by position or keyword, `name` either way."""
        by_keyword = self.pick("ctor_args", ["positional", "keyword"]) == "keyword"
        args = [f"{p}={v}" if by_keyword else v for p, v in scope.ctor.items()]
        if instance:
            how = self.pick("module_name", ["keyword"] if by_keyword or scope.kwargs else ["keyword", "positional"])
            args.append(f'name="{instance}"' if how == "keyword" else f'"{instance}"')
        return f"{name}({', '.join(args)})"

    def submodule(self, outer: _Scope, shape: Shape) -> Shape:
        """A Block class used by the outer module: built inline in the call or in `__init__`."""
        name = self.class_name(BLOCK_NAMES)
        inner = _Scope(self, is_class=True)
        shape = self.fill(inner, shape, self.rng.randint(1, 3))
        instance = outer.name(name.lower()) if self.rng.random() < 0.5 else None
        if inner.ctor:
            self.idiom("submodule:ctor_args")
        if inner.call_params:  # the call-argument switch is passed explicitly some of the time
            self.idiom("submodule:call_arg_default")
        self.classes.append(self.write_class(name, inner))
        ctor = self.instantiate(name, inner, instance)
        callee = outer.place(ctor, instance or name.lower())
        outer.body.append(f"x = {self.call_of(callee)}")
        return shape

    def model_body(self, input_shape: Shape) -> list[str]:
        """The body of `forward`; the classes it uses go to `self.classes`."""
        structure = self.pick("structure", ["function", "module", "nested", "nested"])
        if structure == "function":
            scope = _Scope(self, is_class=False)
            self.fill(scope, input_shape, self.rng.randint(2, 4))
            return scope.hoisted + scope.body + ["return x"]
        name = self.class_name(CLASS_NAMES)
        scope = _Scope(self, is_class=True)
        shape = input_shape
        if structure == "module":
            shape = self.fill(scope, shape, self.rng.randint(2, 5))
        else:
            for _ in range(self.rng.randint(1, 3)):
                if self.rng.random() < 0.7:
                    shape = self.submodule(scope, shape)
                else:
                    shape = self.add_layer(scope, shape)
        if shape.kind != "vector" and self.rng.random() < 0.5:
            self.add_layer(scope, shape)
        self.classes.append(self.write_class(name, scope))
        ctor = self.instantiate(name, scope, None if self.rng.random() < 0.6 else name.lower())
        if self.pick("forward", ["inline", "local"]) == "inline":
            return [f"return {self.call_of(ctor)}"]
        return [f"net = {ctor}", f"return {self.call_of('net')}"]

    # --- program -------------------------------------------------------------------------------
    def input_shape(self) -> tuple[Shape, str]:
        kind = self.pick("input", ["vector", "vector", "image", "sequence", "tokens"])
        if kind == "vector":
            dims: tuple[int, ...] = (self.rng.choice([3, 5, 8]),)
        elif kind == "image":
            side = self.rng.choice([4, 6])
            dims = (side, side, self.rng.choice([1, 3]))
        elif kind == "sequence":
            dims = (self.rng.choice([3, 5]), self.rng.choice(WIDTHS))
        else:
            self.vocab = self.rng.choice([11, 20])
            dims = (self.rng.choice([3, 5]),)
            return Shape(kind, dims), f"i32[{BATCH},{dims[0]}]:0..{self.vocab}"
        return Shape(kind, dims), f"f32[{BATCH},{','.join(map(str, dims))}]"

    def multi_transform(self, shape: Shape) -> list[str]:
        """An encoder/decoder module whose methods are the apply functions of `hk.multi_transform`."""
        name = self.class_name(["AutoEncoder", "EncoderDecoder"])
        scope = _Scope(self, is_class=True)
        code = self.fill(scope, shape, self.rng.randint(1, 2))
        encode, scope.hoisted, scope.body = [*scope.hoisted, *scope.body, "return x"], [], []
        self.fill(scope, code, self.rng.randint(1, 2))
        decode = [*scope.hoisted, *scope.body, "return x"]
        self.classes.append(
            self.write_class(name, scope, [("encode", encode), ("decode", decode), ("__call__", ["return self.decode(self.encode(x))"])])
        )
        self.method_inputs = {"decode": [f"f32[{BATCH},{','.join(map(str, code.dims))}]"]}
        self.entry = self.rng.choice(MODEL_NAMES)
        no_rng = self.chance("transform:without_apply_rng", 0.35)
        init = "    init = lambda x: module(x)" if self.rng.random() < 0.5 else "    def init(x):\n        return module(x)"
        make = "\n".join(
            ["def make_model():", f"    module = {self.instantiate(name, scope, None)}", init, "    return init, (module.encode, module.decode)"]
        )
        transform = "hk.multi_transform_with_state" if self.needs_state else "hk.multi_transform"
        self.idiom(f"transform:{transform[3:]}")
        transform = f"hk.without_apply_rng({transform}(make_model))" if no_rng else f"{transform}(make_model)"
        blocks = [make, f"{self.entry} = {transform}"]
        if self.pick("init", ["same_file", "absent"]) == "same_file":
            dims = ", ".join(map(str, (BATCH, *shape.dims)))
            sample = f"jnp.ones(({dims}), dtype=jnp.int32)" if shape.kind == "tokens" else f"jnp.ones(({dims}))"
            lhs = "params, state" if self.needs_state else "params"
            blocks.append(f"{lhs} = {self.entry}.init(jax.random.PRNGKey(0), {sample})")
        return blocks

    def program(self) -> Program:
        self.method_inputs: dict[str, list[str]] = {}
        self.other_files: dict[str, str] = {}
        self.training = "none"
        multi = self.rng.random() < 0.1
        self.flag = self.rng.choice(FLAG_NAMES) if not multi and self.rng.random() < 0.45 else None
        if self.flag:
            self.idiom("call:training_flag")
        shape, spec = self.input_shape()
        if multi:
            header = self.multi_transform(shape)
        else:
            body = self.model_body(shape)
            header = self.transform_and_training(shape, body)
        text = "\n\n\n".join([self.imports(), *self.classes, *header]) + "\n"
        indent = self.pick("indent", ["2", "2", "4"])
        if indent == "2":
            text = re.sub(r"^((?:    )+)", lambda m: "  " * (len(m.group(1)) // 4), text, flags=re.M)
        args = {self.flag: False} if self.flag else {}
        train_args = {self.flag: True} if self.flag else None
        return Program(
            self.seed, text, self.entry, [spec], args, train_args, sorted(self.idioms), self.other_files, self.method_inputs
        )

    def imports(self) -> str:
        lines = ['"""A generated Haiku program."""', "", "import haiku as hk", "import jax", "import jax.numpy as jnp"]
        if self.training in ("optax", "train_state"):
            lines.append("import optax")
        if self.training == "train_state":
            lines.append("from flax.training import train_state")
        return "\n".join(lines)

    def transform_and_training(self, shape: Shape, body: list[str]) -> list[str]:
        """`forward`, its transform, and optionally init and training code: the module-level blocks."""
        with_state = self.needs_state or self.chance("transform:with_state_unneeded", 0.1)
        transform = "hk.transform_with_state" if with_state else "hk.transform"
        self.idiom(f"transform:{transform.split('.')[1]}")
        no_rng = not self.needs_rng and self.chance("transform:without_apply_rng", 0.35)
        wrap = (lambda t: f"hk.without_apply_rng({t})") if no_rng else (lambda t: t)
        params = ["x"] + ([f"{self.flag}" if self.rng.random() < 0.5 else f"{self.flag}: bool"] if self.flag else [])
        fwd = [f"def forward({', '.join(params)}):"] + [f"    {line}" for line in body]
        how = self.pick("transform", ["module_level", "module_level", "module_level", "factory", "decorated", "function"])
        self.entry = self.rng.choice(MODEL_NAMES)
        if how == "function":  # the caller (verify, a training script) transforms `forward`
            self.entry = "forward"
            self.idiom("init:absent")
            return ["\n".join(fwd)]
        if how == "module_level":
            blocks = ["\n".join(fwd), f"{self.entry} = {wrap(f'{transform}(forward)')}"]
        elif how == "factory":
            blocks = [
                "\n".join(
                    ["def make_model():", '    """Builds the transformed model."""', "", *(f"    {line}" for line in fwd), "",
                     f"    return {wrap(f'{transform}(forward)')}"]
                ),
                f"{self.entry} = make_model()",
            ]
        else:
            decorators = ([f"@hk.without_apply_rng"] if no_rng else []) + [f"@{transform}"]
            blocks = ["\n".join(decorators + [f"def {self.entry}({', '.join(params)}):"] + fwd[1:])]
        where = self.pick("init", ["same_file", "same_file", "main_guard", "other_file", "absent"])
        if where == "absent":
            return blocks
        self.training = self.pick("train", ["none", "sgd", "optax", "train_state"] if not with_state else ["none", "sgd", "optax"])
        init = self.init_code(shape, with_state, no_rng)
        definitions, setup = self.training_code(with_state, no_rng)
        init = "\n".join([init, *setup])
        if where == "other_file":
            imports = self.imports().split("\n", 2)[2]
            header = f'"""Training script for the generated model."""\n\n{imports}\n\nfrom model import {self.entry}'
            self.other_files["train.py"] = "\n\n\n".join([header, *definitions, init]) + "\n"
            self.training = "none"  # the model file itself needs no optax
            return blocks
        if where == "main_guard":
            lines = ["def main():", *(f"    {line}" for line in init.splitlines())]
            return blocks + [*definitions, "\n".join(lines), 'if __name__ == "__main__":\n    main()']
        return blocks + [*definitions, init]

    def init_code(self, shape: Shape, with_state: bool, no_rng: bool) -> str:
        dims = ", ".join(map(str, (self.rng.choice([1, BATCH]), *shape.dims)))
        maker = self.rng.choice(["jnp.ones", "jnp.zeros"])
        sample = f"{maker}(({dims}), dtype=jnp.int32)" if shape.kind == "tokens" else f"{maker}(({dims}))"
        flag = f", {self.flag}=True" if self.flag else ""
        lhs = "params, state" if with_state else "params"
        lines = ["rng = jax.random.PRNGKey(42)"]
        if self.chance("init:sample_variable", 0.5):
            lines += [f"sample = {sample}", f"{lhs} = {self.entry}.init(rng, sample{flag})"]
        else:
            lines.append(f"{lhs} = {self.entry}.init(rng, {sample}{flag})")
            lines.append(f"sample = {sample}")
        if self.chance("init:apply_at_import", 0.4):
            rng = "" if no_rng else "rng, "
            out = "out, state" if with_state else "out"
            lines.append(f"{out} = {self.entry}.apply(params, {'state, ' if with_state else ''}{rng}sample{flag})")
        return "\n".join(lines)

    def training_code(self, with_state: bool, no_rng: bool) -> tuple[list[str], list[str]]:
        """Module-level definitions of the training step, and the lines that set it up after `init`."""
        if self.training == "none":
            return [], []
        rng_param = "" if no_rng else "rng, "
        state = "state, " if with_state else ""
        flag = f", {self.flag}=True" if self.flag else ""
        run = self.chance("train:step_at_import", 0.4)
        if self.training == "train_state":
            step = "\n".join([
                "@jax.jit",
                f"def train_step(train, {rng_param}x):",
                "    def loss_fn(params):",
                f"        out = train.apply_fn(params, {rng_param}x{flag})",
                "        return jnp.mean(jnp.square(out))",
                "",
                "    grads = jax.grad(loss_fn)(train.params)",
                "    return train.apply_gradients(grads=grads)",
            ])
            setup = [f"train = train_state.TrainState.create(apply_fn={self.entry}.apply, params=params, tx=optax.sgd(0.01))"]
            return [step], setup + ([f"train = train_step(train, {rng_param}sample)"] if run else [])
        loss_out = "out, state = " if with_state else "out = "
        loss_ret = "jnp.mean(jnp.square(out)), state" if with_state else "jnp.mean(jnp.square(out))"
        loss = "\n".join([
            f"def loss_fn(params, {state}{rng_param}x):",
            f"    {loss_out}{self.entry}.apply(params, {state}{rng_param}x{flag})",
            f"    return {loss_ret}",
        ])
        grad = f"jax.grad(loss_fn{', has_aux=True' if with_state else ''})(params, {state}{rng_param}x)"
        grads = "grads, state" if with_state else "grads"
        returned = ", state" if with_state else ""
        if self.training == "sgd":
            update = "\n".join([
                "@jax.jit",
                f"def update(params, {state}{rng_param}x):",
                f"    {grads} = {grad}",
                "    params = jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, grads)",
                f"    return params{returned}",
            ])
            return [loss, update], ([f"params{returned} = update(params, {state}{rng_param}sample)"] if run else [])
        update = "\n".join([
            f"def update(params, opt_state, {state}{rng_param}x):",
            f"    {grads} = {grad}",
            "    updates, opt_state = optimizer.update(grads, opt_state, params)",
            f"    return optax.apply_updates(params, updates), opt_state{returned}",
        ])
        setup = ["opt_state = optimizer.init(params)"]
        if run:
            setup.append(f"params, opt_state{returned} = update(params, opt_state, {state}{rng_param}sample)")
        return [loss, "optimizer = optax.adam(1e-3)", update], setup


def generate(seed: int) -> Program:
    """The program for `seed`: the same text, inputs and idioms every time."""
    return _Generator(seed).program()
