"""What every engine offers: a few methods around the engine-neutral trial runner.

An engine owns one study (its storage, its algorithm) and nothing else: it samples points of the
search space, has ``TrialRunner`` train them, and reports its trials as engine-neutral records
(``StudySummary``). Progress, MLflow tracking, best.yaml, the report and the final model only
ever see those records, so they work the same whichever engine ran the search.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

from tuning.errors import StudyStopped
from tuning.results.summary import StudySummary
from tuning.search.record import TrialRecord
from tuning.search.runner import TrialRunner
from tuning.search.space import SearchSpace


class TrialObserver(Protocol):
    """Told about every finished trial (tracking, progress), with the study as it stands."""

    def on_trial_end(self, study: StudySummary, record: TrialRecord) -> None: ...


class Engine(ABC):
    """One search algorithm and its study.

    Constructing an engine checks its settings (nothing is opened or written); ``open`` creates
    the study or loads it to resume; ``run`` trains trials until ``n_trials`` are finished in it.
    """

    name: ClassVar[str]

    @abstractmethod
    def __init__(self, settings: Mapping[str, Any], storage_url: str) -> None:
        """Check the engine's options in the resolved config; open and write nothing."""

    @abstractmethod
    def open(
        self,
        space: SearchSpace,
        *,
        user_attrs: Mapping[str, Any],
        identity: Mapping[str, Any],
        config: Mapping[str, Any],
    ) -> list[str]:
        """Create the study with its identity and config, or load it to resume.

        A resume whose identity differs from the stored one raises ``StudyMismatch``. Returns
        log lines about what opening found (stale trials failed, trials queued again).
        """

    @abstractmethod
    def run(
        self,
        runner: TrialRunner,
        *,
        n_trials: int,
        timeout: float | None,
        observers: Sequence[TrialObserver],
        max_consecutive_failures: int,
    ) -> None:
        """Run trials until ``n_trials`` are finished (COMPLETE or PRUNED); trials already in the
        study count. A trial's own failure is that trial's FAIL; ``max_consecutive_failures`` in
        a row (0: never) raise ``TooManyFailures``; any other error propagates."""

    @abstractmethod
    def summary(self) -> StudySummary:
        """Every trial of the study as engine-neutral records, with the engine's best."""

    def check_resume(self, identity: Mapping[str, Any]) -> None:
        """Refuse, before anything is written, a resume the engine's stored study would refuse
        (``StudyMismatch`` / ``ConfigError``); engines whose store is checked elsewhere do nothing."""
        return None

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


class FailureStreak:
    """Counts trials that failed in a row; any finished trial resets it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.last_error: str | None = None

    def add(self, state: str, error: str | None) -> bool:
        """Count one ended trial; True when the streak reached the limit (0: never)."""
        if state == "FAIL":
            self.count += 1
            self.last_error = error
        else:
            self.count = 0
        return bool(self.limit) and self.count >= self.limit

    def check(self) -> None:
        """Raise ``TooManyFailures`` when the search ended on a full streak."""
        if self.limit and self.count >= self.limit:
            raise TooManyFailures(f"{self.count} trials in a row failed; last error: {self.last_error}")
