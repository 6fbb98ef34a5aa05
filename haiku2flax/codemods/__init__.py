"""Rule families that need code, one module per family of Haiku constructs.

A family registers functions for the Haiku APIs (or node types) it handles, and each receives a typed
room saying what it may read and change: see `interfaces.py`, the module to read first. No family
subclasses a target.
"""

import importlib
import pkgutil


def load_all() -> None:
    """Import every family module (each registers its rule ids)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
