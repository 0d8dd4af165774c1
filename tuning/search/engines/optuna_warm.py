"""``warm_start.from``: seed a new Optuna study from an earlier study or a best.yaml.

With the same data (the identity keys that make values comparable: data, split, seed, cv,
metric and direction), the earlier study's finished trials are copied in with Optuna's
``create_trial`` / ``study.add_trials``: the sampler and pruner learn from them at once, and they
count toward neither ``study.n_trials`` nor a budget (``WARM_FROM_ATTR``). With other data (or a
best.yaml) the earlier top configurations are queued as the first trials (``enqueue_trial``).
Each earlier point is replayed through the new search space: a value outside its range or
choices skips the trial, a name the new space no longer searches is dropped. Done once per study
(``WARM_STUDY_ATTR``, written last, under the study's lock): a resume adds nothing again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from tuning.config.schema import WarmStartConfig
from tuning.config.space import Hyperparameters, SearchSpace
from tuning.config.storage import default_storage_url, local_path
from tuning.errors import ConfigError
from tuning.payload import Payload
from tuning.redaction import first_line
from tuning.search.engines.optuna_stale import PIDNS_ATTR, WORKER_ATTR
from tuning.search.engines.optuna_storage import open_storage
from tuning.search.workers import STREAM_ATTR
from tuning.study.identity import CONFIG_ATTR, IDENTITY_ATTR
from tuning.study.summary import WARM_ATTR, WARM_FROM_ATTR, flat_attrs

WARM_STUDY_ATTR = "warm_start"  # study user attribute: what the warm start added or queued
# Identity keys that make two studies' values comparable (what "the same data" means here).
SAME_DATA = ("data.", "split.", "cv.", "seed", "study.metric", "study.direction")
# Trial user attributes that belong to the run that made them, not to a copy.
NOT_COPIED = (WORKER_ATTR, PIDNS_ATTR, STREAM_ATTR, "budget_epochs", "stopped_by", "retry_of")
ALLOWED = "a study name (paths.root/<name>/optuna.db, or in study.storage) or a path to a best.yaml"


@dataclass
class Source:
    """An earlier study's finished trials (or a best.yaml's one point), and what it was made on."""

    name: str
    trials: list[optuna.trial.FrozenTrial] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)  # best.yaml: its values
    identity: Payload = field(default_factory=dict)
    directions: int = 1
    minimize: bool = True


def load_source(warm: WarmStartConfig, *, storage: str | None, paths_root: str, own: str) -> Source:
    """The study or best.yaml ``warm.source`` names; one ``ConfigError`` line when there is none.
    A study is looked for in ``study.storage`` when set, else in ``paths_root/<name>/optuna.db``."""
    text = str(warm.source)
    path = Path(text)
    if text.endswith((".yaml", ".yml")) or path.is_file():
        return _best_yaml(path)
    if text == own:
        raise ConfigError("warm_start.from", f"'{text}' is this study itself; allowed: {ALLOWED}")
    url = storage or default_storage_url(Path(paths_root) / text)
    file = local_path(url)
    missing = ConfigError(
        "warm_start.from",
        f"no study '{text}' in {file or 'study.storage'} and no such file; allowed: {ALLOWED}",
    )
    if file is not None and not file.is_file():
        raise missing  # before Optuna would create an empty database there
    try:
        study = optuna.load_study(study_name=text, storage=open_storage(url))
    except KeyError:
        raise missing from None
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if not finished:
        raise ConfigError(
            "warm_start.from", f"study '{text}' has no finished trial to start from; allowed: {ALLOWED}"
        )
    direction = study.directions[0]
    return Source(
        name=text,
        trials=list(finished),
        identity=dict(study.user_attrs.get(IDENTITY_ATTR) or {}),
        directions=len(study.directions),
        minimize=direction == optuna.study.StudyDirection.MINIMIZE,
        points=[_flat((study.user_attrs.get(CONFIG_ATTR) or {}).get("search_space") or {})],
    )


def _best_yaml(path: Path) -> Source:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(
            "warm_start.from", f"cannot read {path}: {first_line(err)}; allowed: {ALLOWED}"
        ) from None
    if not isinstance(loaded, Mapping) or not isinstance(loaded.get("search_space"), Mapping):
        raise ConfigError("warm_start.from", f"{path} has no search_space values; allowed: {ALLOWED}")
    point = _flat(loaded["search_space"])
    point.update((loaded.get("model") or {}).get("hp") or {})  # a custom builder's own values
    return Source(name=str(path), points=[point])


def _flat(values: Payload) -> dict[str, Any]:
    """Fixed search-space values as a trial's flat names (``units: [64, 32]`` -> units_0, units_1)."""
    flat = {k: v for k, v in values.items() if k != "units" and not isinstance(v, Mapping)}
    units = values.get("units")
    if isinstance(units, list):
        flat.update({f"units_{i}": u for i, u in enumerate(units)})
    return flat


def check_shared(source: Source, space: SearchSpace) -> None:
    """Refuse a source that has no dimension of ``space`` (nothing to seed it with)."""
    names = {name for t in source.trials for name in t.params} | {n for p in source.points for n in p}
    base = {"units" if n.startswith("units_") else n for n in names}
    if not base & set(space.dimensions):
        raise ConfigError(
            "warm_start.from",
            f"'{source.name}' shares no dimension with this search space (it has: "
            f"{', '.join(sorted(base)) or 'none'}; this one searches {', '.join(space.dimensions)})",
        )


class _Replay:
    """A ``Suggester`` answering from an earlier point; it notes each value's distribution in
    the new space, and the values outside it."""

    def __init__(self, params: Payload) -> None:
        self.params = params
        self.distributions: dict[str, BaseDistribution] = {}
        self.outside: list[tuple[str, Any]] = []  # (name, value) outside the new space

    def _value(self, name: str, distribution: BaseDistribution) -> Any:
        self.distributions[name] = distribution
        value = self.params.get(name)
        if name not in self.params or not _inside(distribution, value):
            self.outside.append((name, value))
            # a stand-in that keeps the replay going (the number of layers decides the units)
            return distribution.choices[0] if isinstance(distribution, CategoricalDistribution) else 1
        return value

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return int(self._value(name, IntDistribution(low, high, log=log, step=step)))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return float(self._value(name, FloatDistribution(low, high, log=log, step=step)))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._value(name, CategoricalDistribution(list(choices)))


def _inside(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    if isinstance(distribution, IntDistribution):
        return bool(
            value == int(value)
            and distribution.low <= value <= distribution.high
            and (int(value) - distribution.low) % distribution.step == 0
        )
    assert isinstance(distribution, FloatDistribution)
    return bool(distribution.low <= value <= distribution.high)


def replay(params: Payload, space: SearchSpace) -> _Replay:
    """An earlier point replayed through ``space``: the distributions its values fall in, and
    what falls outside (a custom builder's own values keep the earlier distribution elsewhere)."""
    replayed = _Replay(params)
    space.suggest(replayed)
    return replayed


def seed_study(
    study: optuna.Study,
    source: Source,
    space: SearchSpace,
    identity: Payload,
    *,
    top: int,
) -> list[str]:
    """Add (same data) or queue (other data) ``source``'s trials in ``study`` once; the lines
    to log. Call under the study's lock: workers starting together seed it once."""
    if study.user_attrs.get(WARM_STUDY_ATTR) is not None:
        return []  # seeded by an earlier run: a resume adds nothing again
    other = _other_data(source, identity, len(study.directions))
    if other is None:
        line, record = _add(study, source, space)
    else:
        line, record = _queue(study, source, space, top, other)
    study.set_user_attr(WARM_STUDY_ATTR, {"from": source.name, **record})  # last: says it is done
    return [line]


def _other_data(source: Source, identity: Payload, directions: int) -> str | None:
    """Why ``source``'s values are not comparable with this study's (None: they are)."""
    if not source.trials:
        return "a best.yaml" if not source.identity else "no finished trial to copy"
    if source.directions != directions:
        return "another number of objectives"
    keys = {k for k in (*source.identity, *identity) if k.startswith(SAME_DATA)}
    differ = sorted(k for k in keys if source.identity.get(k) != identity.get(k))
    if differ:
        shown = ", ".join(f"{k}: {source.identity.get(k)} -> {identity.get(k)}" for k in differ[:3])
        return f"other data: {shown}"
    return None


def _point(params: Payload, source: Source, space: SearchSpace) -> dict[str, Any]:
    """A trial's values, filled where its study did not search a name: the earlier space's fixed
    values, then the built-in model's defaults."""
    defaults = Hyperparameters().as_params() if space.builder is None else {}
    return {**defaults, **(source.points[0] if source.points else {}), **params}


def _add(study: optuna.Study, source: Source, space: SearchSpace) -> tuple[str, dict[str, int]]:
    added: list[optuna.trial.FrozenTrial] = []
    outside: list[str] = []
    dropped: set[str] = set()
    for t in source.trials:
        point = _point(t.params, source, space)
        replayed = replay(point, space)
        if replayed.outside:
            outside.append(_show(replayed.outside[0]))
            continue
        params = {n: point[n] for n in replayed.distributions}
        distributions = dict(replayed.distributions)
        for name, distribution in t.distributions.items():  # a custom builder's own values
            if name not in distributions and space.builder is not None:
                params[name], distributions[name] = t.params[name], distribution
            elif name not in distributions:
                dropped.add(name)
        attrs = {k: v for k, v in flat_attrs(t.user_attrs).items() if k not in NOT_COPIED}
        attrs.update({WARM_ATTR: source.name, WARM_FROM_ATTR: t.number})
        added.append(
            optuna.trial.create_trial(
                state=t.state,
                values=t.values,
                params=params,
                distributions=distributions,
                user_attrs=attrs,
                intermediate_values=dict(t.intermediate_values),
            )
        )
    study.add_trials(added)
    line = f"warm start from {source.name}: {len(added)} trial{'' if len(added) == 1 else 's'} added{_skipped(outside)}"
    if dropped:
        line += f"; not searched now, dropped: {', '.join(sorted(dropped))}"
    return line, {"added": len(added), "skipped": len(outside)}


def _queue(
    study: optuna.Study, source: Source, space: SearchSpace, top: int, why: str
) -> tuple[str, dict[str, int]]:
    sign = 1.0 if source.minimize else -1.0
    complete = [t for t in source.trials if t.state == TrialState.COMPLETE and t.values]
    complete.sort(key=lambda t: sign * float(t.values[0]))
    points = [_point(t.params, source, space) for t in complete[:top]] if complete else source.points[:1]
    queued, outside = 0, []
    for point in points:
        replayed = replay(point, space)
        off = {name for name, _ in replayed.outside}
        params = {n: point[n] for n in replayed.distributions if n not in off}
        if space.builder is not None:  # a custom builder's own values: its trial checks them
            params.update({n: v for n, v in point.items() if n not in replayed.distributions})
        if not params:
            outside.append(_show(replayed.outside[0]) if replayed.outside else "nothing to queue")
            continue
        study.enqueue_trial(params, user_attrs={WARM_ATTR: source.name})
        queued += 1
    line = (
        f"warm start from {source.name} ({why}): {queued} configuration{'' if queued == 1 else 's'} "
        f"queued as the first trials{_skipped(outside)}"
    )
    return line, {"queued": queued, "skipped": len(outside)}


def _show(pair: tuple[str, Any]) -> str:
    return f"{pair[0]}={pair[1]}" if pair[1] is not None else f"{pair[0]} missing"


def _skipped(outside: Sequence[str]) -> str:
    if not outside:
        return ""
    shown = ", ".join(sorted(set(outside))[:3]) + (", ..." if len(set(outside)) > 3 else "")
    return f", {len(outside)} skipped (outside the space: {shown})"
