"""Search engines: each one chooses trials its own way and has the same trial runner train them.

Adding an engine: one module here with an ``Engine`` subclass, one line in ``ENGINES``, one
``conf/engine/<name>.yaml``. Engine modules are imported only when chosen, so nothing else in
the package imports optuna or keras_tuner.
"""

from __future__ import annotations

import importlib

from tuning.config import Settings
from tuning.errors import ConfigError
from tuning.search.engines.base import Engine

# engine name -> "module:class", imported on first use
ENGINES = {
    "optuna": "tuning.search.engines.optuna:OptunaEngine",
    "keras_tuner": "tuning.search.engines.keras_tuner:KerasTunerEngine",
}


def engine_class(name: str) -> type[Engine]:
    """The engine called ``name``; an unknown name is one line listing the known ones."""
    target = ENGINES.get(str(name))
    if target is None:
        raise ConfigError("engine", f"'{name}' is not one of: {', '.join(sorted(ENGINES))}")
    module, _, cls = target.partition(":")
    engine: type[Engine] = getattr(importlib.import_module(module), cls)
    return engine


def make_engine(settings: Settings, storage_url: str) -> Engine:
    """The engine the config names, its options checked (nothing opened or written)."""
    return engine_class(settings.engine.name)(settings, storage_url)
