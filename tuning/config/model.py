"""The ``model`` config group: which model, and for model=custom where its builder is.

Only looks the builder's module up (``importlib.util.find_spec``): it is imported, with whatever
it imports, when the data is loaded (``tuning.model.builder.load_builder``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path

from tuning.errors import ConfigError
from tuning.payload import RawConfig

MODELS = ("mlp", "custom")
MODEL_KEYS = ("name", "build", "hp")  # hp: the winning values, in a best.yaml only


def model_builder(cfg: RawConfig) -> str | None:
    """Check the ``model`` config; returns ``model.build`` for model=custom, None for the MLP.

    The builder's module must be findable from the working directory (put on ``sys.path``, as
    Hydra's ``_target_`` users expect); it is not imported yet.

    Raises:
        ConfigError: one line naming the key, the value and what is allowed.
    """
    model = cfg.get("model") or {"name": "mlp"}
    if not isinstance(model, Mapping):
        raise ConfigError("model", f"{model!r}; allowed: {', '.join(MODELS)}")
    name = model.get("name")
    if name not in MODELS:
        raise ConfigError("model", f"{name!r} is not one of: {', '.join(MODELS)}")
    unknown = sorted(set(model) - set(MODEL_KEYS))
    if unknown:
        raise ConfigError(f"model.{unknown[0]}", f"unknown key; allowed: {', '.join(MODEL_KEYS)}")
    if name == "mlp":
        if model.get("build") not in (None, "???"):
            raise ConfigError("model.build", "is for model=custom; add model=custom to use your builder")
        return None
    path = model.get("build")
    if path in (None, "", "???"):
        raise ConfigError("model.build", "is required with model=custom: set model.build=my_models.build")
    module, attr = split_path(str(path))
    on_path()
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package that is missing or fails to import
        found = None
    if found is None:
        raise ConfigError(
            "model.build",
            f"{path}: no module '{module}' importable from the working directory ({Path.cwd()}) "
            "or sys.path; give a dotted path such as my_models.build",
        )
    return str(path)


def split_path(path: str) -> tuple[str, str]:
    """``pkg.module.build`` or ``pkg.module:build`` -> (module, attribute)."""
    module, sep, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module or not attr or not all(p.isidentifier() for p in (*module.split("."), attr)):
        raise ConfigError(
            "model.build",
            f"{path!r} is not a dotted path to a function or class; e.g. my_models.build or my_models:build",
        )
    return module, attr


def on_path() -> None:
    """The working directory on ``sys.path``: ``model.build=my_models.build`` finds ./my_models.py."""
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
