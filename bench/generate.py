"""Generate a tree of realistic Haiku files for the benchmark, deterministically from a seed.

Each file is drawn from templates shaped like real Haiku code bases: model files (MLP, residual and
normalisation blocks, custom parameters and state), training scripts (transforms, init/apply, loss,
optax and hand-written SGD steps, data pipelines, evaluation, a `main`), transform utilities
(`transform_with_state`, `without_apply_rng`) and single files mixing all of it. Sizes, names, layer
counts and the share of plain Python around the Haiku code vary per file. `--plain` writes files that
never mention Haiku (what a migration of a mixed monorepo mostly walks past).

    python bench/generate.py OUT_DIR --files 1000 [--seed 0] [--plain]
"""

from __future__ import annotations

import argparse
import random
import textwrap
from pathlib import Path

ACTIVATIONS = ["relu", "gelu", "silu", "tanh", "elu", "swish"]
NOUNS = ["encoder", "decoder", "tower", "trunk", "head", "policy", "critic", "value", "backbone", "stem", "mixer", "router"]
DATASETS = ["mnist", "cifar10", "imagenet", "wikitext", "lm1b", "atari", "svhn", "celeba"]


def _camel(words: list[str]) -> str:
    return "".join(w.capitalize() for w in words)


class _Writer:
    """Builds one file from template pieces, with a random source seeded per file."""

    def __init__(self, rng: random.Random, index: int) -> None:
        self.rng = rng
        self.index = index
        self.indent = rng.choice(["  ", "  ", "    "])  # Haiku code bases mostly indent by two
        self.alias = rng.choice(["hk", "hk", "hk", "hk", "haiku"])
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        text = textwrap.dedent(text).strip("\n") + "\n"
        if self.indent != "    ":
            text = "\n".join(_reindent(line, self.indent) for line in text.split("\n"))
        self.parts.append(text.replace("hk.", f"{self.alias}."))

    def text(self) -> str:
        return "\n\n".join(self.parts)

    def imports(self, *extra: str) -> None:
        haiku = f"import haiku as {self.alias}" if self.alias != "haiku" else "import haiku"
        lines = [haiku, "import jax", "import jax.numpy as jnp"]
        lines += list(extra)
        self.parts.append("\n".join(sorted(set(lines), key=lambda s: (s.startswith("from"), s))) + "\n")

    def name(self) -> str:
        return _camel(self.rng.sample(NOUNS, 2))

    def size(self) -> int:
        return self.rng.choice([32, 64, 128, 256, 512, 1024])


def _reindent(line: str, indent: str) -> str:
    stripped = line.lstrip(" ")
    depth = (len(line) - len(stripped)) // 4
    return indent * depth + stripped


# -- templates ----------------------------------------------------------------------------------------


def _mlp_block(w: _Writer, name: str) -> None:
    act = w.rng.choice(ACTIVATIONS)
    rate = w.rng.choice(["0.1", "0.2", "0.5"])
    w.add(
        f'''
        class {name}(hk.Module):
            """A dense block: Linear, {act}, then dropout while training."""

            def __init__(self, features: int, name: Optional[str] = None):
                super().__init__(name=name)
                self.features = features

            def __call__(self, x: jnp.ndarray, is_training: bool) -> jnp.ndarray:
                x = hk.Linear(self.features)(x)
                x = jax.nn.{act}(x)
                x = hk.dropout(hk.next_rng_key(), {rate} if is_training else 0, x)
                return x
        '''
    )


def _norm_block(w: _Writer, name: str) -> None:
    decay = w.rng.choice(["0.9", "0.99", "0.999"])
    w.add(
        f'''
        class {name}(hk.Module):
            """Linear and BatchNorm with a residual connection when the sizes agree."""

            def __init__(self, features: int, name: Optional[str] = None):
                super().__init__(name=name)
                self.features = features

            def __call__(self, x, is_training: bool):
                shortcut = x
                x = hk.Linear(self.features, with_bias=False)(x)
                x = hk.BatchNorm(create_scale=True, create_offset=True, decay_rate={decay})(x, is_training=is_training)
                x = jax.nn.relu(x)
                if shortcut.shape[-1] == x.shape[-1]:
                    x = x + shortcut
                return x
        '''
    )


def _model(w: _Writer, name: str, blocks: list[str]) -> None:
    layers = ("\n" + " " * 16).join(f"x = {block}(self.hidden)(x, is_training)" for block in blocks)
    w.add(
        f'''
        class {name}(hk.Module):
            """{len(blocks)} blocks and a linear read-out."""

            def __init__(self, hidden: int, num_classes: int, name: Optional[str] = None):
                super().__init__(name=name)
                self.hidden = hidden
                self.num_classes = num_classes

            def __call__(self, x, is_training: bool = False):
                x = jnp.reshape(x, (x.shape[0], -1))
                {layers}
                return hk.Linear(self.num_classes, name="logits")(x)
        '''
    )


def _projection_module(w: _Writer, name: str) -> None:
    size = w.size()
    w.add(
        f'''
        class {name}(hk.Module):
            """Layers built in the constructor and used by several methods."""

            def __init__(self, embed_dim: int = {size}, output_dim: int = {w.size()}, name=None):
                super().__init__(name=name)
                self.encoder = hk.Linear(embed_dim, name="encoder")
                self.decoder = hk.Linear(output_dim, name="decoder")

            def encode(self, x):
                return jax.nn.gelu(self.encoder(x))

            def decode(self, z):
                return self.decoder(z)

            def __call__(self, x):
                return self.decode(self.encode(x))
        '''
    )


def _scale_module(w: _Writer, name: str) -> None:
    w.add(
        f'''
        class {name}(hk.Module):
            """A learned per-feature scale and a running count kept as state."""

            def __call__(self, x):
                scale = hk.get_parameter("scale", [x.shape[-1]], init=jnp.ones)
                count = hk.get_state("count", [], jnp.int32, init=jnp.zeros)
                hk.set_state("count", count + 1)
                return x * scale
        '''
    )


def _helpers(w: _Writer) -> None:
    """Plain Python that lives beside Haiku code: config, schedules, metrics, array utilities."""
    lr = w.rng.choice(["1e-3", "3e-4", "1e-4"])
    w.add(
        f'''
        @dataclasses.dataclass(frozen=True)
        class Config:
            """Hyper-parameters, read from flags or a config file."""

            learning_rate: float = {lr}
            batch_size: int = {w.rng.choice([32, 64, 128, 256])}
            num_steps: int = {w.rng.choice([1000, 10000, 100000])}
            warmup_steps: int = {w.rng.choice([100, 500, 1000])}
            weight_decay: float = 1e-4
            seed: int = {w.rng.randrange(100)}
            log_every: int = 100

            def replace(self, **changes) -> "Config":
                return dataclasses.replace(self, **changes)


        def learning_rate_schedule(step: int, config: Config) -> float:
            """Linear warm-up, then cosine decay to zero."""
            if step < config.warmup_steps:
                return config.learning_rate * (step + 1) / config.warmup_steps
            progress = (step - config.warmup_steps) / max(1, config.num_steps - config.warmup_steps)
            return 0.5 * config.learning_rate * (1 + math.cos(math.pi * min(progress, 1.0)))


        def accuracy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
            return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


        def softmax_cross_entropy(logits, labels, num_classes):
            one_hot = jax.nn.one_hot(labels, num_classes)
            return -jnp.sum(one_hot * jax.nn.log_softmax(logits), axis=-1)


        def batches(images: np.ndarray, labels: np.ndarray, batch_size: int, *, seed: int = 0):
            """Shuffled batches, forever; the last incomplete batch of each epoch is dropped."""
            rng = np.random.default_rng(seed)
            while True:
                order = rng.permutation(len(images))
                for start in range(0, len(order) - batch_size + 1, batch_size):
                    index = order[start : start + batch_size]
                    yield {{"image": images[index].astype(np.float32) / 255.0, "label": labels[index]}}


        def summarize(history: list[dict[str, float]]) -> dict[str, float]:
            """Mean of every metric over the steps seen."""
            totals: dict[str, float] = collections.defaultdict(float)
            for entry in history:
                for key, value in entry.items():
                    totals[key] += float(value)
            return {{key: value / max(1, len(history)) for key, value in totals.items()}}
        '''
    )


def _training(w: _Writer, model: str, sgd: bool) -> None:
    hidden, din = w.size(), w.rng.choice([784, 3072, 128, 64])
    seed = w.rng.randrange(100)
    w.add(
        f'''
        def forward(x, is_training: bool):
            return {model}({hidden}, 10)(x, is_training)


        model = hk.transform(forward)

        sample_x = jnp.ones((1, {din}))
        params = model.init(jax.random.key({seed}), sample_x, is_training=False)


        def loss_fn(params, key, batch):
            logits = model.apply(params, key, batch["image"], is_training=True)
            return softmax_cross_entropy(logits, batch["label"], 10).mean()
        '''
    )
    if sgd:
        w.add(
            '''
            @jax.jit
            def train_step(key, params, batch):
                grads = jax.grad(loss_fn)(params, key, batch)
                params = jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, grads)
                return params
            '''
        )
    else:
        w.add(
            '''
            optimizer = optax.adam(1e-3)
            opt_state = optimizer.init(params)


            @jax.jit
            def train_step(key, params, opt_state, batch):
                loss, grads = jax.value_and_grad(loss_fn)(params, key, batch)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                params = optax.apply_updates(params, updates)
                return params, opt_state, loss
            '''
        )
    w.add(
        '''
        def evaluate(params, batches_seen, num_batches: int = 10):
            """Accuracy of the model over `num_batches` batches."""
            scores = []
            for _, batch in zip(range(num_batches), batches_seen):
                logits = model.apply(params, None, batch["image"], is_training=False)
                scores.append(float(accuracy(logits, batch["label"])))
            return sum(scores) / max(1, len(scores))
        '''
    )


def _main(w: _Writer, sgd: bool) -> None:
    dataset = w.rng.choice(DATASETS)
    step = (
        "params = train_step(step_key, params, batch)"
        if sgd
        else "params, opt_state, loss = train_step(step_key, params, opt_state, batch)"
    )
    w.add(
        f'''
        def load_dataset(path: str):
            """Images and labels of the {dataset} split stored at `path` (an .npz file)."""
            with np.load(path) as data:
                return data["images"], data["labels"]


        def main(argv=None):
            parser = argparse.ArgumentParser(description="Train a classifier on {dataset}.")
            parser.add_argument("--data", default="/tmp/{dataset}.npz")
            parser.add_argument("--steps", type=int, default=1000)
            parser.add_argument("--log-every", type=int, default=100)
            args = parser.parse_args(argv)
            logging.basicConfig(level=logging.INFO)
            images, labels = load_dataset(args.data)
            stream = batches(images, labels, 128)
            global params, opt_state
            key = jax.random.key(0)
            start = time.time()
            for step in range(args.steps):
                key, step_key = jax.random.split(key)
                batch = next(stream)
                {step}
                if step % args.log_every == 0:
                    logging.info("step %d: accuracy %.3f (%.1fs)", step, evaluate(params, stream, 2), time.time() - start)
            return params


        if __name__ == "__main__":
            main()
        '''
    )


def _stateful_transforms(w: _Writer, block: str) -> None:
    din = w.rng.choice([16, 32, 64])
    w.add(
        f'''
        def net(x, is_training: bool):
            return {block}({w.size()})(x, is_training)


        stateful = hk.transform_with_state(net)
        variables_x = jnp.zeros((8, {din}))
        params, state = stateful.init(jax.random.PRNGKey({w.rng.randrange(10)}), variables_x, is_training=True)


        def predict(params, state, x):
            logits, state = stateful.apply(params, state, None, x, is_training=False)
            return logits
        '''
    )


def _plain_module(w: _Writer) -> None:
    """A file of ordinary Python (no Haiku at all)."""
    name = w.name()
    w.parts.append("import collections\nimport dataclasses\nimport json\nimport math\nimport os\n")
    w.add(
        f'''
        @dataclasses.dataclass
        class {name}Record:
            """One row of the {w.rng.choice(DATASETS)} index."""

            path: str
            label: int
            weight: float = 1.0

            def to_json(self) -> str:
                return json.dumps(dataclasses.asdict(self))


        def read_index(root: str) -> list[{name}Record]:
            records = []
            for directory, _, files in os.walk(root):
                for file in sorted(files):
                    if file.endswith(".json"):
                        with open(os.path.join(directory, file)) as handle:
                            records.append({name}Record(**json.load(handle)))
            return records


        def class_weights(records: list[{name}Record]) -> dict[int, float]:
            counts = collections.Counter(record.label for record in records)
            total = sum(counts.values())
            return {{label: total / (len(counts) * count) for label, count in counts.items()}}


        def entropy(probabilities: list[float]) -> float:
            return -sum(p * math.log(p) for p in probabilities if p > 0)
        '''
    )


# -- file kinds ---------------------------------------------------------------------------------------


def _models_file(w: _Writer) -> None:
    w.parts.append(f'"""Model definitions for the {w.rng.choice(NOUNS)} experiments."""\n')
    w.imports("from typing import Optional")
    blocks = []
    for _ in range(w.rng.randint(1, 3)):
        name = w.name() + "Block"
        (_mlp_block if w.rng.random() < 0.6 else _norm_block)(w, name)
        blocks.append(name)
    _model(w, w.name() + "Net", blocks)
    if w.rng.random() < 0.5:
        _projection_module(w, w.name())
    if w.rng.random() < 0.3:
        _scale_module(w, w.name() + "Scale")


def _training_file(w: _Writer) -> None:
    w.parts.append(f'"""Train a classifier on {w.rng.choice(DATASETS)}."""\n')
    sgd = w.rng.random() < 0.5
    w.imports("import argparse", "import collections", "import dataclasses", "import logging", "import math", "import time",
              "import numpy as np", "from typing import Optional", *([] if sgd else ["import optax"]))
    _helpers(w)
    block = w.name() + "Block"
    _mlp_block(w, block)
    model = w.name() + "Net"
    _model(w, model, [block])
    _training(w, model, sgd)
    _main(w, sgd)


def _transforms_file(w: _Writer) -> None:
    w.parts.append('"""Stateful networks and their init/apply functions."""\n')
    w.imports("from typing import Optional")
    block = w.name() + "Block"
    _norm_block(w, block)
    _stateful_transforms(w, block)


def _mixed_file(w: _Writer) -> None:
    w.parts.append('"""A model and its training step in one file, as in the migration guide."""\n')
    w.imports("import collections", "import dataclasses", "import math", "import numpy as np", "from typing import Optional")
    block = w.name() + "Block"
    _mlp_block(w, block)
    model = w.name() + "Model"
    _model(w, model, [block])
    if w.rng.random() < 0.5:
        _helpers(w)
    _training(w, model, sgd=True)


KINDS = [(_models_file, 4), (_training_file, 3), (_transforms_file, 1), (_mixed_file, 2)]


def haiku_file(seed: int, index: int) -> str:
    rng = random.Random(f"{seed}:{index}")
    w = _Writer(rng, index)
    kind = rng.choices([k for k, _ in KINDS], weights=[weight for _, weight in KINDS])[0]
    kind(w)
    return w.text()


def plain_file(seed: int, index: int) -> str:
    w = _Writer(random.Random(f"{seed}:plain:{index}"), index)
    _plain_module(w)
    if w.rng.random() < 0.5:
        w.parts[0] += "import numpy as np\nimport jax\nimport jax.numpy as jnp\nimport argparse\nimport logging\nimport time\n"
        _helpers(w)
    return w.text()


def generate(out: Path, files: int, seed: int = 0, plain: bool = False) -> list[Path]:
    """Write `files` files under `out` in packages of up to 50, like a real repository; returns them."""
    written = []
    for index in range(files):
        package = out / f"pkg_{index // 50:03d}"
        package.mkdir(parents=True, exist_ok=True)
        path = package / f"module_{index:05d}.py"
        path.write_text(plain_file(seed, index) if plain else haiku_file(seed, index), encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="files without any Haiku")
    args = parser.parse_args()
    generate(args.out, args.files, args.seed, args.plain)


if __name__ == "__main__":
    main()
