"""A study's identity: the settings that make its trials comparable, stored with the study.

A resume may change how the search goes on (more trials, another sampler or pruner, tracking,
threads); it may not change what a trial is (data, split, seed, search space, training rules,
metric), or the new trials would not be comparable with the stored ones and the best trial's
config would no longer be what trained it. No Optuna, pandas or TensorFlow import: the sweep
checks this before anything is written or trained.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuning.errors import ConfigError
from tuning.payload import Payload, RawConfig
from tuning.redaction import redact

# Study user attributes: the identity (flat key -> value) and the whole config that made the study.
IDENTITY_ATTR, CONFIG_ATTR = "identity", "config"

# Settings a resume may change: they decide how the search goes on, not what a trial is.
CHANGEABLE = (
    "study.n_trials",
    "study.timeout",
    "study.storage",
    "study.heartbeat_interval",
    "study.grace_period",
    "study.max_consecutive_failures",
    "study.top",
    "stop",  # when the search ends (stop=converged): a resume may turn it on, off or change it
    "budget",  # how much the study may spend: a resume may raise it to search on
    "warm_start",  # applied once, when the study is made or first seeded (a study attribute says so)
    "engine",  # each engine keeps its studies apart (its own name and storage)
    "sampler",
    "pruner",
    "tracking",
    "training.threads",
    "workers",
    "training.steps_per_execution",  # same weight updates (tests/test_speed_defaults.py)
    "training.graph_optimizations",  # the same values to float32 rounding (model/backend.py)
    "training.kept_models",  # the same values (model/reuse.py, tests/model/test_reuse.py)
    "training.checkpoints",  # where a trial resumes from, not what it computes (search/checkpoints.py)
    "final",
    "paths",
    "hydra",
    "verbose",  # what the terminal shows
)
# Files whose content, not only their path, is part of the identity.
FILE_KEYS = ("data.path", "data.test_path")
GROWING = "README's 'Growing a search space'"


def changeable(key: str) -> bool:
    return any(key == c or key.startswith(c + ".") for c in CHANGEABLE)


def study_identity(raw: RawConfig) -> dict[str, Any]:
    """Flat ``key -> value`` of everything that defines the study's trials, from the config as
    composed (``auto`` kept: what the command asked).

    Search-space entries stay whole (``search_space.units -> {type: int, ...}``) so that a
    range can be compared as one; data files add ``<key>.sha256`` of their content.
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if changeable(prefix):
            return
        if prefix == "model" and isinstance(value, Mapping) and dict(value) == {"name": "mlp"}:
            return  # the built-in model: studies made before `model` existed keep their identity
        if isinstance(value, Mapping) and prefix != "" and prefix.startswith("search_space."):
            out[prefix] = _plain(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = _plain(value)

    walk("", raw)
    # The defaults (selection=best, no cv) leave the identity as it was before they existed, so
    # studies made before them still resume.
    if out.get("selection.name", "best") == "best":
        out = {k: v for k, v in out.items() if not k.startswith("selection.")}
    if out.get("cv.folds") is None:
        out.pop("cv.folds", None)
    for key in FILE_KEYS:
        path = out.get(key)
        if path not in (None, "", "???"):
            out[f"{key}.sha256"] = file_fingerprint(Path(str(path)))
    return out


def file_fingerprint(path: Path) -> str | None:
    """sha256 of the file's bytes (None when it cannot be read: the data check says why)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def stored_config(raw: RawConfig) -> dict[str, Any]:
    """The config kept with the study (credentials redacted, Hydra's own section left out)."""
    out = {k: _plain(v) for k, v in raw.items() if k != "hydra"}
    for section, key in (("study", "storage"), ("tracking", "uri")):
        if isinstance(out.get(section), dict) and out[section].get(key):
            out[section] = {**out[section], key: redact(out[section][key])}
    return out


def differences(stored: Payload, current: Payload) -> tuple[list[str], list[str]]:
    """Refused differences (``key: study has X, command has Y``) and widened numeric ranges."""
    refused, widened = [], []
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key, _ABSENT), current.get(key, _ABSENT)
        if _same(old, new):
            continue
        if key in FILE_KEYS and _same_content(stored, current, key):
            continue  # the file moved (or is named another way): its rows are the same
        if key.endswith(".sha256") and new in (None, _ABSENT):
            continue  # unreadable now: the data check names the file and says why
        if key.startswith("search_space.") and widens(old, new):
            widened.append(f"{key}: {_show(old)} -> {_show(new)}")
            continue
        refused.append(f"{key}: study has {_show(old)}, command has {_show(new)}")
    return refused, widened


def widens(old: Any, new: Any) -> bool:
    """A numeric range that only grows (same type, step and log): every stored trial stays inside it."""
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        return False
    if old.get("type") not in ("int", "float") or old.get("type") != new.get("type"):
        return False
    if any(old.get(k) != new.get(k) for k in ("step", "log")) or set(old) != set(new):
        return False
    try:
        return bool(new["low"] <= old["low"] and new["high"] >= old["high"])
    except (KeyError, TypeError):
        return False


class StudyMismatch(ConfigError):
    """A resume whose command changes what the study's trials are: refused, exit 2."""

    def __init__(self, name: str, lines: list[str]) -> None:
        self.lines = lines
        n = len(lines)
        message = (
            f"'{name}' was made with other settings ({n} difference{'s' if n > 1 else ''}); a resume "
            "may change only study.n_trials, study.timeout, sampler, pruner, tracking, training.threads:\n"
            + "".join(f"  {line}\n" for line in lines)
            + f"  start a new study with study.name=NEW, or see the {GROWING}"
        )
        super().__init__("study", message)


def check_resume(name: str, stored: Payload | None, current: Payload) -> list[str]:
    """Raise StudyMismatch for a refused difference; return the widened ranges (allowed).

    A study without a stored identity (made before identities were kept, or a kill right after
    its row was written) is accepted: the caller adopts the command's.
    """
    if not stored:
        return []
    refused, widened = differences(stored, current)
    if refused:
        raise StudyMismatch(name, refused)
    return widened


_ABSENT = object()


def _same_content(stored: Payload, current: Payload, key: str) -> bool:
    digest = stored.get(f"{key}.sha256")
    return digest is not None and digest == current.get(f"{key}.sha256")


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "none"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-safe copy (Optuna stores user attributes as JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
