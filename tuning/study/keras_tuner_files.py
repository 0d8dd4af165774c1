"""A KerasTuner study's files: our study.json and per-trial sidecars beside KerasTuner's own JSON.

KerasTuner keeps each trial in ``<project>/trial_<id>/trial.json`` (status, values, score) but
has nowhere for what our trials measure (train/validation metrics, gaps, seed, fail reason):
those go to ``trial_<id>/tuning.json`` next to it, and the study's own attributes (metric, task,
identity, config) to ``<project>/study.json``. Neither TensorFlow nor keras_tuner is imported: `tuning
report` and the resume check read a KerasTuner study without them, and the engine
builds its ``StudySummary`` with the same reader, so the sweep and the report agree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tuning.errors import ConfigError
from tuning.files import atomic_text, file_lock
from tuning.payload import Payload
from tuning.study.summary import StudySummary, TrialSummary

PROJECT = "keras_tuner"  # KerasTuner's project folder inside experiments/<study>/
STUDY_FILE, SIDECAR = "study.json", "tuning.json"
# KerasTuner's trial status -> our state. A RUNNING trial was interrupted (Ctrl-C, SIGTERM, a
# kill): KerasTuner runs it again, under the same number, when the study resumes.
STATES = {"COMPLETED": "COMPLETE", "FAILED": "FAIL", "INVALID": "FAIL", "RUNNING": "RUNNING"}
# Hyperband's bookkeeping values in a trial's hyperparameters: not ours, not params.
TUNER_PREFIX = "tuner/"


def project_folder(study_dir: str | Path) -> Path:
    return Path(study_dir) / PROJECT


def write_json(path: Path, data: Payload) -> None:
    """Write ``data`` atomically: a crash leaves the old file or the new one, never half of one."""
    with atomic_text(path) as fh:
        json.dump(_finite(data), fh, indent=1, sort_keys=True, default=str)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing; every file of a KerasTuner study
    (ours and KerasTuner's) is read through here.

    Raises:
        ConfigError: (``study.name``) the file is cut off, not JSON or not a JSON object, naming
            the file and what to do.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as err:
        raise _damaged(path, str(err)) from None
    if not isinstance(data, dict):
        raise _damaged(path, f"a JSON {type(data).__name__}, not an object")
    return data


def _damaged(path: Path, what: str) -> ConfigError:
    return ConfigError(
        "study.name",
        f"{path}: not a readable KerasTuner file ({what}); nothing was written to the study; restore "
        "it from a backup, or move the study's folder away to start it anew",
    )


def read_study_file(project: Path) -> dict[str, Any] | None:
    """``study.json`` (name, direction, engine options, user attributes), or None for a new study."""
    return read_json(project / STUDY_FILE)


def sidecar_path(project: Path, trial_id: str) -> Path:
    return project / f"trial_{trial_id}" / SIDECAR


def local_studies(root: Path) -> list[str]:
    """Study folders under ``root`` that hold a KerasTuner study."""
    return sorted(p.parent.parent.name for p in Path(root).glob(f"*/{PROJECT}/{STUDY_FILE}"))


def read_project(project: Path, name: str | None = None) -> StudySummary | None:
    """The study in a KerasTuner project folder as engine-neutral records (None: no study.json)."""
    study = read_study_file(project)
    if study is None:
        return None
    trials = []
    for trial_file in sorted(project.glob("trial_*/trial.json")):
        trial = read_json(trial_file) or {}
        side = read_json(trial_file.with_name(SIDECAR)) or {}
        trials.append(_trial(trial, side))
    trials.sort(key=lambda t: t.number)
    return StudySummary(
        name=str(study.get("name", name or project.parent.name)),
        direction=str(study.get("direction", "minimize")),
        user_attrs=dict(study.get("user_attrs") or {}),
        trials=trials,
        engine=PROJECT,
    )


def _trial(trial: Payload, side: Payload) -> TrialSummary:
    status = str(trial.get("status", "RUNNING"))
    state = STATES.get(status, "FAIL")
    values = (trial.get("hyperparameters") or {}).get("values") or {}
    params = side.get("params") or {k: v for k, v in values.items() if not k.startswith(TUNER_PREFIX)}
    attrs = dict(side.get("user_attrs") or {})
    if state == "FAIL" and not attrs.get("fail_reason"):
        message = str(trial.get("message") or "").strip()
        attrs["fail_reason"] = message.splitlines()[-1] if message else f"KerasTuner status {status}"
    score = trial.get("score")
    value = float(score) if state == "COMPLETE" and isinstance(score, (int, float)) else None
    if value is not None and not math.isfinite(value):
        value = None
    return TrialSummary(
        number=int(trial.get("trial_id", side.get("number", -1))),
        state=state,
        value=value,
        params=dict(params),
        int_params=frozenset(side.get("int_params") or ()),
        user_attrs=attrs,
        seconds=side.get("seconds"),
        start_time=side.get("start_time"),
        intermediate_values={
            int(k): float(v) for k, v in (side.get("intermediate_values") or {}).items() if v is not None
        },
    )


def _finite(value: Any) -> Any:
    """JSON without NaN/Infinity (not JSON): a non-finite number is stored as null."""
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_project(project: Path) -> None:
    """Refuse, in one line, a study whose KerasTuner files are damaged (before TensorFlow loads)."""
    for path in [project / "study.json", project / "oracle.json", *sorted(project.glob("trial_*/*.json"))]:
        read_json(path)


@contextmanager
def only_worker(project: Path, study: str) -> Iterator[None]:
    """Hold study ``study``'s lock file while trials run: KerasTuner's files are written by one
    process, and a second one on the same study would overwrite the first's oracle state."""
    with ExitStack() as held:
        try:
            held.enter_context(file_lock(project / ".lock", wait=False))
        except TimeoutError:
            raise ConfigError(
                "study.name",
                f"'{study}' is being searched by another process; engine=keras_tuner "
                "runs one worker per study (engine=optuna runs many): wait for it, or use another study.name",
            ) from None
        yield
