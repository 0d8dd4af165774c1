"""Write and read best.yaml: the sweep's config with the search space fixed to the winning values."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tuning.space import Hyperparameters
from tuning.storage import redact
from tuning.tasks import resolve_loss

# Keys whose values may hold credentials; they are written redacted.
SECRET_KEYS = (("study", "storage"), ("tracking", "uri"))


def best_config(
    settings: Mapping[str, Any],
    hp: Hyperparameters,
    *,
    task: str,
    best: Mapping[str, Any],
) -> dict[str, Any]:
    """The plain config that reproduces the best trial.

    ``settings`` is the resolved sweep config; its ``search_space`` is replaced by fixed values
    (``loss: auto`` resolved for the task), ``best`` records where it came from.
    """
    out = {k: v for k, v in settings.items() if k != "hydra"}
    fixed = hp.as_config()
    fixed["loss"] = resolve_loss(hp.loss, task)
    out["search_space"] = fixed
    for section, key in SECRET_KEYS:
        if isinstance(out.get(section), Mapping) and out[section].get(key):
            out[section] = {**out[section], key: redact(out[section][key])}
    out["best"] = dict(best)
    return out


def write_yaml(path: str | Path, data: Mapping[str, Any], header: str = "") -> Path:
    """Write atomically: a crash never leaves a half-written file in place of a good one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(_plain(data), sort_keys=False, default_flow_style=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(header + text)
    os.replace(tmp, path)
    return path


def _plain(value: Any) -> Any:
    """Tuples and numpy scalars to YAML-safe Python types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value
