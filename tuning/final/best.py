"""Write and read best.yaml: the sweep's config with the search space fixed to the winning values."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tuning.config import Settings
from tuning.config.schema import Component
from tuning.config.space import Hyperparameters, SearchSpace
from tuning.config.space_config import hyperparameters_from_config
from tuning.config.tasks import resolve_loss
from tuning.errors import ConfigError
from tuning.files import atomic_text
from tuning.payload import Payload, RawConfig
from tuning.redaction import redact
from tuning.study.identity import CONFIG_ATTR
from tuning.study.selection import pick_reason, selection_of
from tuning.study.summary import StudySummary, TrialSummary

if TYPE_CHECKING:  # pandas/scikit-learn: not needed to read a best.yaml
    from tuning.data import Dataset

log = logging.getLogger("tuning")

# Keys whose values may hold credentials; they are written redacted.
SECRET_KEYS = (("study", "storage"), ("tracking", "uri"))


def best_config(
    config: Payload,
    hp: Hyperparameters,
    *,
    task: str,
    best: Payload,
) -> dict[str, Any]:
    """The plain config that reproduces the best trial.

    ``config`` is the resolved sweep config (as the study stored it); its ``search_space`` is
    replaced by fixed values (``loss: auto`` resolved for the task), ``best`` records where it
    came from.
    """
    out = {k: v for k, v in config.items() if k != "hydra"}
    fixed = hp.as_config()
    if hp.builder is None:
        fixed["loss"] = resolve_loss(hp.loss, task)
    else:  # the builder's winning values: `tuning train` replays them through it
        out["model"] = {**out.get("model", {}), "build": hp.builder, "hp": dict(hp.extra)}
    out["search_space"] = fixed
    for section, key in SECRET_KEYS:
        if isinstance(out.get(section), Mapping) and out[section].get(key):
            out[section] = {**out[section], key: redact(out[section][key])}
    out["best"] = dict(best)
    return out


def write_yaml(path: str | Path, data: Payload, header: str = "") -> Path:
    """Write atomically: a crash never leaves a half-written file in place of a good one."""
    with atomic_text(path) as fh:
        fh.write(header + _dump(data))
    return Path(path)


def write_yaml_if_changed(path: str | Path, data: Payload, header: str = "") -> bool:
    """Like ``write_yaml``, but a file that already holds this text is left untouched (same bytes,
    same modification time); returns whether it was written."""
    text = header + _dump(data)
    try:
        if Path(path).read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    with atomic_text(path) as fh:
        fh.write(text)
    return True


def _dump(data: Payload) -> str:
    return str(yaml.safe_dump(_plain(data), sort_keys=False, default_flow_style=False))


# What a trial stored that best.yaml leaves out: where it ran, and its failure notes.
NOT_EXPORTED = ("traceback", "worker", "worker_pidns", "fail_reason", "interrupted")


def export_best(
    study: StudySummary,
    best: TrialSummary,
    space: SearchSpace,
    dataset: Dataset,
    *,
    settings: Settings,
    study_dir: Path,
) -> Path:
    """best.yaml from the study: the winning trial's stored parameters and the config the study
    was made with (``config`` user attribute), whatever this command says about sampler, pruner,
    n_trials or tracking. An unchanged study gives a byte-identical file, left untouched."""
    stored = study.user_attrs.get(CONFIG_ATTR)
    made_with: Payload = dict(stored) if isinstance(stored, Mapping) else settings.raw
    # The resume check made the study's space and this command's the same (or only wider).
    hp = space.replay(best.params)
    metric = str(study.user_attrs.get("metric", settings.study.metric))
    value = float(best.value) if best.value is not None else float("nan")
    best_info = {
        "trial": best.number,
        "value": value,
        "metric": metric,
        "direction": study.direction,
        "study": study.name,
        "engine": study.engine,
        # What the model was made for: `tuning train` refuses data with other columns or classes.
        "task": dataset.task,
        "target": dataset.target,
        "columns": list(dataset.columns),
        "class_names": dataset.class_names,
        **{k: v for k, v in best.user_attrs.items() if k not in NOT_EXPORTED and v is not None},
        # Why this trial: the selection rule and what it found (README, Overfitting-aware selection).
        "selection": {**selection_of(study).as_attr(), "reason": pick_reason(study)},
    }
    # training.* is the study's identity: a resume keeps the stored config's value.
    simulated = settings.training.simulate_epoch_seconds
    if simulated is not None:  # a rehearsal's values are made up: `tuning train` refuses it
        best_info["rehearsal"] = True
    path = study_dir / "best.yaml"
    rung = lower_rung(best, hp.epochs, settings.engine)
    changed = write_yaml_if_changed(
        path,
        best_config(made_with, hp, task=dataset.task, best=best_info),
        header=f"# Best trial {best.number} of study '{study.name}': "
        f"{metric}={value:.6g}. Reuse: tuning train study={study.name}\n"
        + (f"# {rung.removeprefix('warning: ')}\n" if rung else "")
        + (
            "# REHEARSAL (training.simulate_epoch_seconds): no model was trained; not for `tuning train`\n"
            if simulated is not None
            else ""
        ),
    )
    log.info(f"best trial {best.number}: {metric}={value:.6g}")
    if rung:
        log.warning(rung)
    for key, v in (hp.as_params() if hp.builder else hp.as_config()).items():
        log.info(f"  {key}: {v}")
    log.info(f"best config {'written to' if changed else 'unchanged in'} {path}")
    return path


def lower_rung(best: TrialSummary, epochs: int, engine: Component) -> str | None:
    """A warning when Hyperband gave the best trial fewer epochs than its largest budget (it was
    not promoted to the last round of its bracket); None otherwise, and for other engines.

    best.yaml keeps what the trial trained (``epochs`` = its budget), which is what its score
    measured: a longer ``epochs`` there would describe a model nobody evaluated.
    """
    attrs = best.user_attrs
    budget, top = attrs.get("hyperband_epochs"), attrs.get("hyperband_max_epochs")
    if not isinstance(budget, int) or not isinstance(top, int) or budget >= top:
        return None
    sampled = attrs.get("sampled_epochs")
    if isinstance(sampled, int) and sampled <= budget:  # the budget did not cap it: its own length
        records = f"epochs: {epochs}, its own choice, but it was never compared with trials trained longer"
    else:
        chose = f" (it sampled {sampled})" if isinstance(sampled, int) else ""
        records = f"epochs: {epochs}, what it trained and was scored on{chose}, not a length it chose"
    factor = engine.options.get("factor")  # the engine's own option (a resume cannot change it)
    more = ""
    if isinstance(factor, int):
        from tuning.search.engines.keras_tuner_space import hyperband_trials

        more = f" (one whole iteration: study.n_trials={hyperband_trials(top, factor)[0]})"
    return (
        f"warning: best trial {best.number} was trained in a lower Hyperband round only ({budget} of "
        f"max_epochs={top} epochs): best.yaml records {records}; run more trials so the brackets "
        f"reach {top} epochs{more}"
    )


# Sections a best.yaml must hold to train the final model, and the ``best`` keys it relies on.
BEST_SECTIONS = ("data", "split", "training", "search_space", "study", "best")
BEST_KEYS = {"trial": 0, "best_epoch": 1}  # key -> lowest allowed integer


def read_best(path: str | Path) -> dict[str, Any]:
    """Load and check a best.yaml written by ``tuning sweep``.

    Raises:
        ConfigError: naming the file, or the key at fault and the file.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError("best", f"cannot read {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError("best", f"{path} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError("best", f"{path} holds {type(data).__name__}, not a mapping of config sections")
    check_best(data, str(path))
    return data


def check_best(cfg: RawConfig, source: str) -> Hyperparameters:
    """Check the parts of a best.yaml (or a config composed from it) that final training needs.

    Returns the fixed hyperparameters. ``source`` names the file in messages.
    """
    hint = f"in {source} (re-run `tuning sweep` to write it again)"
    for section in BEST_SECTIONS:
        if not isinstance(cfg.get(section), Mapping):
            found = "missing" if section not in cfg else f"{cfg[section]!r} is not a mapping"
            raise ConfigError(section, f"{found} {hint}")
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError("seed", f"{seed!r} {hint}; must be an integer >= 0")
    best = cfg["best"]
    if best.get("rehearsal"):
        raise ConfigError(
            "best.rehearsal",
            f"{source} comes from a rehearsal (training.simulate_epoch_seconds): its values are made up, "
            "no model was trained; allowed: a best.yaml from a sweep without training.simulate_epoch_seconds",
        )
    for key, low in BEST_KEYS.items():
        value = best.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            found = "missing" if value is None else f"{value!r}; must be an integer >= {low}"
            raise ConfigError(f"best.{key}", f"{found} {hint}")
    model: RawConfig = cfg["model"] if isinstance(cfg.get("model"), Mapping) else {}
    custom = model.get("name") == "custom"
    try:
        return hyperparameters_from_config(
            cfg["search_space"],
            builder=str(model.get("build")) if custom else None,
            extra=model.get("hp") if custom else None,
        )
    except ConfigError as err:
        raise ConfigError(err.key, f"{err.message} (in {source})") from None


def _plain(value: Any) -> Any:
    """Tuples and numpy scalars to YAML-safe Python types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value
