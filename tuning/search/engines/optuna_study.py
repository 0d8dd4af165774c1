"""An Optuna study for a sweep: created with its identity or loaded to resume, and read as records."""

from __future__ import annotations

import logging
import warnings

import optuna

from tuning.config.schema import StudyConfig
from tuning.errors import ConfigError
from tuning.redaction import first_line, redact
from tuning.search.engines.base import StudyRecord
from tuning.search.engines.optuna_storage import open_storage
from tuning.study.identity import CONFIG_ATTR, IDENTITY_ATTR, check_resume
from tuning.study.selection import apply as apply_selection
from tuning.study.summary import StudySummary, TrialSummary, flat_attrs

log = logging.getLogger("tuning.search.engines.optuna")


def connect(study_config: StudyConfig, storage_url: str) -> optuna.storages.BaseStorage:
    """The storage of ``storage_url``, with the study's heartbeat settings (RDB storages)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        storage: optuna.storages.BaseStorage = open_storage(
            storage_url,
            heartbeat_interval=study_config.heartbeat_interval,
            grace_period=study_config.grace_period,
        )
    except SQLAlchemyError as err:  # the server went away, or refused us, since the checks
        raise ConfigError("study.storage", f"cannot open {redact(storage_url)}: {first_line(err)}") from None
    return storage


def open_study(  # noqa: PLR0913 - optuna.create_study's parts plus the record to store
    study_config: StudyConfig,
    storage: optuna.storages.BaseStorage,
    storage_url: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    *,
    record: StudyRecord,
    two_objectives: bool = False,
) -> tuple[optuna.Study, bool]:
    """Create the study in ``storage`` (opened by ``connect``; ``storage_url`` names it in
    messages) with ``record``, or load it to resume; True when this call made it.

    A resume whose ``record.identity`` differs from the stored one is refused (``StudyMismatch``),
    except numeric ranges that only widen, which become the study's. A study without a stored
    identity (made before identities were kept, or killed right after its row was written)
    adopts the command's. ``record.config`` (the creating command's, redacted) is kept beside
    it: best.yaml is built from it, never from a later command.
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        study, made = _create_or_load(study_config, storage, sampler, pruner, two_objectives)
    except SQLAlchemyError as err:  # the server went away, or refused us, since the checks
        raise ConfigError("study.storage", f"cannot open {redact(storage_url)}: {first_line(err)}") from None
    if made:
        # A kill between creation and these writes leaves a study without them: the next run
        # adopts them from its config (below), so the identity is never missing for long.
        _store_identity(study, record)
        return study, True
    _check_objectives(study, study_config, str(redact(storage_url)), two_objectives)
    _resume_identity(study, record)
    return study, False


def _create_or_load(
    study_config: StudyConfig,
    storage: optuna.storages.BaseStorage,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    two_objectives: bool,
) -> tuple[optuna.Study, bool]:
    """``create_study(load_if_exists=True)`` spelled out: one insert decides who made the study
    (no load-then-create window for workers starting together), and we learn whether it was
    this worker (its sampler stream, see reseed_on_resume)."""
    Direction = optuna.study.StudyDirection
    first = Direction.MAXIMIZE if study_config.direction == "maximize" else Direction.MINIMIZE
    directions = [first, Direction.MINIMIZE] if two_objectives else [first]
    name = study_config.name
    try:
        made = optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, pruner=pruner, directions=directions
        )
        return made, True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner), False


def _check_objectives(
    study: optuna.Study, study_config: StudyConfig, where: str, two_objectives: bool
) -> None:
    """Refuse a resume with another number of objectives, metric or direction."""
    name, direction, metric = study_config.name, study_config.direction, study_config.metric
    if len(study.directions) != (2 if two_objectives else 1):
        made = "selection=pareto" if len(study.directions) > 1 else "one objective"
        raise ConfigError(
            "selection", f"study '{name}' in {where} was made with {made}; use another study.name"
        )
    old_direction = study.directions[0].name.lower()
    old_metric = study.user_attrs.get("metric")
    if old_direction != direction or (old_metric and old_metric != metric):
        raise ConfigError(
            "study.metric" if old_metric != metric else "study.direction",
            f"study '{name}' in {where} optimizes {old_metric} ({old_direction}), "
            f"not {metric} ({direction}); use another study.name",
        )


def _resume_identity(study: optuna.Study, record: StudyRecord) -> None:
    """Check the command against the stored identity; adopt it where none was stored, and
    keep a widened search space as the study's."""
    stored = study.user_attrs.get(IDENTITY_ATTR)
    widened = check_resume(study.study_name, stored, record.identity)
    if not stored:
        log.info(
            f"study '{study.study_name}' has no stored identity (made before identities were kept, or its "
            "first run stopped right after creating it): adopted this command's settings as the study's"
        )
        _store_identity(study, record)
    elif widened:
        log.info(f"study '{study.study_name}': search space widened: " + "; ".join(widened))
        merged = dict(study.user_attrs.get(CONFIG_ATTR) or record.config)
        merged["search_space"] = dict(record.config.get("search_space") or {})
        _store_identity(study, StudyRecord({}, record.identity, merged))


def _store_identity(study: optuna.Study, record: StudyRecord) -> None:
    for key, value in record.user_attrs.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    study.set_user_attr(CONFIG_ATTR, dict(record.config))
    study.set_user_attr(IDENTITY_ATTR, dict(record.identity))  # last: its presence says the others are stored


def summarize(study: optuna.Study, kept: dict[int, TrialSummary] | None = None) -> StudySummary:
    """The study as engine-neutral records; ``best_number`` is the study's selection pick.

    A two-objective study (selection=pareto) keeps ``value`` = the validation metric; its second
    objective, the overfitting gap, is in the trial's user attributes (``gap_<metric>``).
    ``kept``: records of ended trials made by an earlier call (see ``trial_summaries``).
    """
    trials = trial_summaries(study, kept)
    best: int | None = None
    if len(study.directions) == 1:
        try:
            best = study.best_trial.number
        except ValueError:  # none complete (or, constrained, none feasible: the selection decides)
            best = None
    summary = StudySummary(
        name=study.study_name,
        direction=study.directions[0].name.lower(),
        user_attrs=dict(study.user_attrs),
        trials=trials,
        engine="optuna",
        best_number=best,
    )
    return apply_selection(summary)


def trial_summaries(study: optuna.Study, kept: dict[int, TrialSummary] | None = None) -> list[TrialSummary]:
    """Every trial of ``study`` as a record, in one read (no best trial, no selection).

    ``kept``: records of ended trials from an earlier call, reused and added to. An ended trial
    never changes in Optuna (its storage refuses the write), so a sweep that reads its study
    after every trial builds each record once, not once per later trial: the per-trial cost
    stays flat as the study grows (``experiments/benchmarks/bookkeeping.py``).
    """
    records = []
    for t in study.get_trials(deepcopy=False):
        record = kept.get(t.number) if kept is not None else None
        if record is None or record.state != t.state.name:
            record = _record(t)
            if kept is not None and t.state.is_finished():
                kept[t.number] = record
        records.append(record)
    return records


def _record(t: optuna.trial.FrozenTrial) -> TrialSummary:
    return TrialSummary(
        number=t.number,
        state=t.state.name,
        value=t.values[0] if t.values else None,
        params=dict(t.params),
        int_params=frozenset(
            n for n, d in t.distributions.items() if isinstance(d, optuna.distributions.IntDistribution)
        ),
        user_attrs=flat_attrs(t.user_attrs),
        seconds=t.duration.total_seconds() if t.duration is not None else None,
        start_time=t.datetime_start.timestamp() if t.datetime_start else None,
        intermediate_values=dict(t.intermediate_values),
    )


def load_summary(url: str, name: str) -> StudySummary:
    """Study ``name`` from any Optuna storage URL (``KeyError`` when it has none by that name)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return summarize(optuna.load_study(study_name=name, storage=open_storage(url)))


def study_names(url: str) -> list[str]:
    """The studies an Optuna storage holds."""
    return sorted(optuna.study.get_all_study_names(storage=open_storage(url)))
