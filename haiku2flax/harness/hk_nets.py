"""The `hk.nets` sources shipped inside the installed dm-haiku: real Haiku code nobody here wrote.

The benchmark (`bench/real_code.py`) converts them and the tests (`tests/test_hk_nets.py`) verify the
converted models. Their comments ask forks to replace the `class hk:` shim with `import haiku as hk`;
that substitution is made here, so the code reads as a user's would.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

FORK_SHIM = re.compile(r"# If you are forking replace this with `import haiku as hk`\.\n(?:#.*\n)?class hk:\n(?:  .*\n)+(?:#.*\n)?")
PRIVATE_IMPORTS = re.compile(r"^from haiku\._src import .*\n|^del .*\n", flags=re.M)  # what the shim was built from


def installed_nets() -> dict[str, str]:
    """`{"hk.nets/mlp.py": source, ...}`: the installed `hk.nets` sources (tests aside), as a fork would have them."""
    spec = importlib.util.find_spec("haiku")  # located, not imported: nothing here needs jax
    if spec is None or not spec.submodule_search_locations:
        found = f"`haiku` is {spec.origin}" if spec is not None else "no `haiku` module"
        raise ModuleNotFoundError(f"the dm-haiku package is not installed ({found})")
    nets = Path(spec.submodule_search_locations[0]) / "_src" / "nets"
    sources = {}
    for path in sorted(nets.glob("*.py")):
        if path.name.endswith("_test.py") or path.name == "__init__.py":
            continue
        text = FORK_SHIM.sub("import haiku as hk\n", path.read_text(encoding="utf-8"))
        sources[f"hk.nets/{path.name}"] = PRIVATE_IMPORTS.sub("", text)
    return sources
