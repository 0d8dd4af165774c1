"""What every engine offers: propose points, learn from their results, list its trials.

An engine owns one study (its storage, its algorithm) and nothing else: ``ask`` proposes the next
trial's point, ``report`` hears each epoch's value (and may prune), ``tell`` learns how the trial
ended, and ``summary`` lists the trials as engine-neutral records (``StudySummary``). The loop and
each trial's life (training, child run, failures, interrupts, budgets) belong to the runner
(``tuning.search.loop``), one for every engine, so a trial means the same whichever engine chose
it. Progress, MLflow tracking, best.yaml, the report and the final model only ever see the records.

Adding an engine: one module with an ``Engine`` subclass (its capabilities as class attributes),
one line in ``tuning.search.engines.ENGINES``, one ``conf/engine/<name>.yaml``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from tuning.config import Settings
from tuning.config.schema import StopConfig, WarmStartConfig
from tuning.config.space import Hyperparameters, SearchSpace, Suggester
from tuning.errors import StudyStopped
from tuning.payload import Payload
from tuning.study.record import TrialRecord
from tuning.study.summary import StudySummary, TrialSummary


class TrialObserver(Protocol):
    """Told about every finished trial (tracking, progress), with the study as it stands."""

    def on_trial_end(self, study: StudySummary, record: TrialRecord) -> None: ...


@dataclass
class Proposal:
    """A point the engine proposes: its trial number, its hyperparameters, and the ``suggester``
    through which a custom model's builder draws its own values as it builds (None: an MLP).
    ``trial`` is the engine's own handle on it (an Optuna trial, a KerasTuner trial).
    ``retry_of``: the interrupted trial this one runs again under a new number (its checkpoint
    is continued), and ``seed`` that trial's seed, so the re-run computes what it would have."""

    number: int
    hyperparameters: Hyperparameters
    suggester: Suggester | None = None
    trial: Any = None
    retry_of: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Outcome:
    """How a trial ended, for ``Engine.tell``.

    ``state``: COMPLETE (``value`` is the objective), PRUNED or FAIL. ``attrs``: what the trial
    measured or why it failed (stored with it). ``stopped``: the sweep stopped while it ran
    (Ctrl-C, SIGTERM, an error of ours), so the trial did not end on its own; the engine keeps it
    for a re-run on resume its own way. ``hyperparameters`` (a custom builder's values in
    ``extra``), ``history`` (the objective per epoch), ``start_time`` and ``seconds``: what
    trained, for engines that store the trial themselves.
    """

    state: str
    value: float | None = None
    attrs: Payload = field(default_factory=dict)
    stopped: bool = False
    hyperparameters: Hyperparameters | None = None
    history: Mapping[int, float] = field(default_factory=dict)
    start_time: float | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class StudyRecord:
    """What a new study keeps with itself, for ``Engine.open``: ``user_attrs`` (metric, task, data,
    class names, engine, selection), ``identity`` (the settings a resume must keep, checked against
    the stored one) and ``config`` (the creating command's config, redacted: best.yaml is built
    from it, never from a later command's)."""

    user_attrs: Payload
    identity: Payload
    config: Payload


# Study user attribute: why the search last stopped itself (stop=converged), and when.
STOP_ATTR = "stopped"


@dataclass(frozen=True)
class Convergence:
    """Why ``stop=converged`` ends the search: the best trial so far, and the terminator's
    estimate at that point (``why``: e.g. "no improvement over the best (0.2981, trial 12) in
    the last 10 completed trials (min 20)")."""

    why: str
    best_number: int
    best_value: float
    completed: int


class Engine(ABC):
    """One search algorithm and its study.

    Constructing an engine checks its settings (nothing is opened or written); ``open`` creates
    the study or loads it to resume; inside ``searching()`` the runner asks, reports and tells.
    """

    name: ClassVar[str]
    # What the engine can do (README, "Engines"): several processes on one study, pruning from
    # epoch values, a constrained study, two objectives, and the storages it keeps studies in.
    supports_workers: ClassVar[bool] = False
    supports_pruning: ClassVar[bool] = False
    supports_constraints: ClassVar[bool] = False
    supports_multi_objective: ClassVar[bool] = False
    # stop=converged: the engine can judge, from its study, when more trials are unlikely to help.
    supports_converged_stop: ClassVar[bool] = False
    # budget.epochs / budget.minutes: the engine stores each trial's claimed epochs (``begin``)
    # where every worker reads them; warm_start.from: it can seed its study from an earlier one.
    supports_budget: ClassVar[bool] = False
    supports_warm_start: ClassVar[bool] = False
    storages: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def __init__(self, settings: Settings, storage_url: str) -> None:
        """Check the engine's options in the resolved config; open and write nothing."""

    @abstractmethod
    def open(self, space: SearchSpace, record: StudyRecord) -> list[str]:
        """Create the study with ``record`` (its attributes, identity and config), or load it to resume.

        A resume whose identity differs from the stored one raises ``StudyMismatch``. Returns
        log lines about what opening found (stale trials failed, trials queued again).
        """

    @contextmanager
    def searching(self, build: Callable[[str, Suggester], None]) -> Iterator[None]:
        """Hold what the engine needs while trials run (a lock, its algorithm's state).

        ``build(builder, suggester)`` builds a custom model once, its values drawn through
        ``suggester``: how an engine that must know a builder's names before its first trial
        (KerasTuner's oracles) declares them.
        """
        yield

    @abstractmethod
    def ask(self) -> Proposal | None:
        """The next trial's point, its trial started in the study (None: nothing left to propose)."""

    def begin(self, proposal: Proposal, attrs: Payload) -> None:
        """Store ``attrs`` (seed, metric) with the trial before it trains."""
        return

    def report(self, proposal: Proposal, epoch: int, value: float) -> bool:
        """Hear the objective after ``epoch`` (from 0); True: prune the trial now."""
        return False

    @abstractmethod
    def tell(self, proposal: Proposal, outcome: Outcome) -> Outcome:
        """Store how the trial ended and learn from it; returns what was stored (the engine may
        fail a trial it cannot rank, and gives the stored value and duration)."""

    @abstractmethod
    def summary(self) -> StudySummary:
        """Every trial of the study as engine-neutral records, with the engine's best."""

    def trials(self) -> list[TrialSummary]:
        """Every trial as a record, as cheaply as the engine can (a budget reads them each epoch)."""
        return self.summary().trials

    def n_finished(self) -> int:
        """Finished trials (COMPLETE or PRUNED) in the study, whichever worker ran them."""
        return self.summary().finished_count()

    def converged(self, rule: StopConfig) -> Convergence | None:
        """With ``stop=converged``: whether more trials are unlikely to beat the best, judged
        from every trial in the study (None: go on). Engines without ``supports_converged_stop``
        are refused at config-check time and never asked."""
        return None

    def record_stop(self, attrs: Payload) -> None:
        """Store why the search stopped itself (``stop=converged``) with the study."""
        return

    def check_warm_start(self, warm: WarmStartConfig, identity: Payload) -> None:
        """Refuse, before anything is written, a ``warm_start.from`` with no such study or
        best.yaml, or one sharing no dimension with the search space (``ConfigError``)."""
        return

    def check_resume(self, identity: Payload) -> None:
        """Refuse, before anything is written, a resume the engine's stored study would refuse
        (``StudyMismatch`` / ``ConfigError``); engines whose store is checked elsewhere do nothing."""
        return

    def write_plots(self, folder: Path, plotlyjs: str = "none") -> list[Path]:
        """The engine's own plots of the study for the MLflow parent run (none by default)."""
        return []

    def describe(self) -> str:
        """One line for the log: the algorithm and its main options."""
        return self.name

    def location(self) -> str:
        """Where the study is kept, for the log (credentials redacted)."""
        return "its storage"


class TooManyFailures(StudyStopped):
    """Every recent trial failed: the configuration is likely broken, so the sweep stops."""
