"""Per-epoch checkpoints of a running trial, so a resumed sweep continues it from its last epoch.

At each epoch's end (after early stopping and the pruner have seen it) the trial's state is
written to ``<study_dir>/checkpoints/trial-<number>/epoch-<k>/``: every variable of the model
and its optimizer (``Model.variables``, ``Optimizer.variables``: weights, optimizer slots and
step, and the random state of the layers, Keras' seed generators, which ``model.save`` leaves
out: without them dropout draws other masks after a resume), the ``EarlyStopping`` state with
its best weights, and the epoch log. The variables go to one ``.npz`` rather than ``model.save``'s
``.keras`` archive: ~9 ms a save instead of ~50 ms on a small MLP (benchmarks/checkpoints.py),
paid every epoch; the fresh model a resume builds has the same variables in the same order. The folder is written under a
temporary name and renamed: a kill leaves the previous epoch's checkpoint or this one, never half
of one. It lives while the trial runs; the loop removes it when the trial ends on its own.

Why not ``keras.callbacks.BackupAndRestore``: it keeps the weights and the epoch counter only
(not EarlyStopping's best value, wait and best weights, nor the seed generators, so a resumed
fit drifts from an uninterrupted one), writes its two files one after the other (a kill between
them pairs one epoch's weights with another's counter) and resumes through the model's private
``_initial_epoch``. Here the fit starts at ``initial_epoch`` through ``Model.fit``'s own argument.

Imports Keras (through ``tuning.model.fit``): the search loop imports this module only when a
trial trains, never a rehearsal or a config check.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuning.interrupts import shielded
from tuning.model.fit import EpochLog, Resumable

log = logging.getLogger("tuning")

_EPOCH = re.compile(r"^epoch-(\d+)$")
ARRAYS_FILE, STATE_FILE = "arrays.npz", "state.json"
# EarlyStopping's state between epochs (public attributes it resets in on_train_begin).
STOPPER_FIELDS = ("wait", "stopped_epoch", "best", "best_epoch")


def trial_folder(root: Path, number: int) -> Path:
    """Where trial ``number`` keeps its checkpoint while it runs."""
    return root / f"trial-{number}"


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint in a trial's folder (a renamed ``epoch-<k>``), or None."""
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH.match(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


@dataclass(frozen=True)
class Checkpoint:
    """A trial's checkpoint as found on disk: ``epochs`` finished, their logs, and the trial that
    wrote it (``source``: the interrupted trial a re-run continues)."""

    path: Path
    epochs: int
    history: dict[str, list[float]]
    source: int
    state: dict[str, Any] = field(default_factory=dict)


def read(path: Path | None) -> Checkpoint | None:
    """The checkpoint written in ``path`` (an ``epoch-<k>`` folder); None for no path, or one a
    disk fault damaged (warned: the fit starts anew rather than the sweep stopping)."""
    if path is None:
        return None
    try:
        state = json.loads((path / STATE_FILE).read_text())
        return Checkpoint(path, int(state["epochs"]), state["history"], int(state["trial"]), state)
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); starting anew")
        return None


def claim(root: Path, number: int, retry_of: int | None) -> Checkpoint | None:
    """The checkpoint trial ``number`` continues, or None (it starts at epoch 0).

    Its own, when the engine re-runs a stopped trial under the same number (KerasTuner), else
    that of the trial it re-runs (``retry_of``: Optuna queues an interrupted trial's params as a
    new trial, whose ``retry_of`` user attribute names the original). The link is the engine's
    own record of the re-run, not a hash of the params: two trials with the same params (a
    grid, a queued point) are different trials, and only the re-run has the original's seed.
    The folder is renamed to the new number, so a re-run interrupted in turn leaves it where its
    own re-run looks.
    """
    own = trial_folder(root, number)
    if latest(own) is None and retry_of is not None:
        earlier = trial_folder(root, retry_of)
        if latest(earlier) is not None:
            shutil.rmtree(own, ignore_errors=True)
            earlier.replace(own)
    return read(latest(own))


def remove(root: Path, number: int) -> None:
    """Drop trial ``number``'s checkpoints (it ended on its own: nothing will continue it), and
    the ``checkpoints`` folder once no trial keeps one."""
    shutil.rmtree(trial_folder(root, number), ignore_errors=True)
    with contextlib.suppress(OSError):  # another trial's checkpoint is in it, or it is gone
        root.rmdir()


def prepare(root: Path, number: int, retry_of: int | None) -> tuple[EpochCheckpoint, Checkpoint | None]:
    """Trial ``number``'s checkpoint callback, continuing the checkpoint it finds (logged)."""
    start = claim(root, number, retry_of)
    if start is not None:
        log.info(
            f"trial {number}: resumed at epoch {start.epochs + 1} from trial {start.source}'s checkpoint "
            f"({start.epochs} epochs done)"
        )
    return EpochCheckpoint(trial_folder(root, number), number, start), start


def final_checkpoint(folder: Path, key: str) -> EpochCheckpoint:
    """The final model's checkpoint callback (``tuning train``), continuing the checkpoint in
    ``folder`` when it was written by the same fit (``key``: params, seed, data and training
    settings); one of another fit is removed, not continued."""
    start = read(latest(folder))
    if start is not None and start.state.get("key") != key:
        log.info(f"final model: {folder} holds another fit's checkpoint (other settings): starting anew")
        shutil.rmtree(folder, ignore_errors=True)
        start = None
    if start is not None:
        log.info(
            f"final model: resumed at epoch {start.epochs + 1} from its checkpoint ({start.epochs} epochs done)"
        )
    return EpochCheckpoint(folder, -1, start, key=key)


class EpochCheckpoint(Resumable):
    """Writes the trial's state at each epoch's end into ``folder``; with ``start``, restores it
    first and the fit continues at ``start.epochs`` (``tuning.model.fit.Resumable``)."""

    def __init__(
        self, folder: Path, number: int, start: Checkpoint | None = None, *, key: str | None = None
    ) -> None:
        super().__init__()
        self.folder = folder
        self.number = number
        self.start = start
        self.key = key  # what the fit is (``final_checkpoint``): another fit's is not continued
        self.stopper: Any = None
        self.log: EpochLog | None = None
        # A checkpoint written after early stopping decided to stop has no epoch left to train.
        done = start is not None and bool(start.state.get("stopped"))
        self.initial_epoch = (2**31 if done else start.epochs) if start is not None else 0

    def attach(self, model: Any, stopper: Any, epoch_log: EpochLog) -> None:
        self.stopper, self.log = stopper, epoch_log
        if self.start is None:
            return
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # its slots exist before they load
        variables = _variables(model)
        saved = _arrays(self.start.path, int(self.start.state.get("variables", 0)))
        if saved is None or [a.shape for a in saved] != [tuple(v.shape) for v in variables]:
            log.warning(f"{self.start.path}: unreadable, or another model's variables: starting anew")
            self.start, self.initial_epoch = None, 0
            return
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)
        for name, values in self.start.history.items():  # in place: the runner holds this dict
            epoch_log.history[name] = list(values)

    def on_train_begin(self, logs: Any = None) -> None:
        """After the stopper's own reset: give it back its best value, wait and best weights."""
        if self.start is None or self.stopper is None:
            return
        import numpy as np

        saved = self.start.state.get("stopper") or {}
        for name in STOPPER_FIELDS:
            if name in saved:
                setattr(self.stopper, name, saved[name])
        with np.load(self.start.path / ARRAYS_FILE) as arrays:
            count = int(saved.get("best_weights", 0))
            self.stopper.best_weights = [arrays[f"best_{i}"] for i in range(count)] or None

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        with shielded():  # a SIGTERM now is raised once the checkpoint is whole
            self.save(epoch + 1)

    def save(self, epochs: int) -> Path:
        """Write the state after ``epochs`` epochs; drop the earlier checkpoint."""
        import numpy as np

        model = self.model
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".epoch-{epochs}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        variables = _variables(model)
        arrays = {f"var_{i}": np.asarray(v) for i, v in enumerate(variables)}
        best = getattr(self.stopper, "best_weights", None) or []
        arrays.update({f"best_{i}": np.asarray(w) for i, w in enumerate(best)})
        np.savez(tmp / ARRAYS_FILE, **arrays)  # type: ignore[arg-type]
        (tmp / STATE_FILE).write_text(json.dumps(self._state(epochs, len(best), len(variables))))
        final = self.folder / f"epoch-{epochs}"
        shutil.rmtree(final, ignore_errors=True)
        tmp.replace(final)
        for old in self.folder.iterdir():
            if old != final and _EPOCH.match(old.name):
                shutil.rmtree(old, ignore_errors=True)
        return final

    def _state(self, epochs: int, n_best: int, n_variables: int) -> dict[str, Any]:
        history = {name: list(values[:epochs]) for name, values in self._history().items()}
        stopper: dict[str, Any] = {"best_weights": n_best}
        if self.stopper is not None:
            stopper.update({name: _plain(getattr(self.stopper, name, None)) for name in STOPPER_FIELDS})
        stopped = bool(self.model.stop_training) or bool(stopper.get("stopped_epoch"))
        return {
            "epochs": epochs,
            "trial": self.number,
            "key": self.key,
            "variables": n_variables,
            "history": history,
            "stopper": stopper,
            "stopped": stopped,
        }

    def _history(self) -> dict[str, list[float]]:
        return self.log.history if self.log is not None else {}


def _arrays(path: Path, count: int) -> list[Any] | None:
    """The ``count`` variables saved in ``path``; None where a disk fault damaged the file."""
    import zipfile

    import numpy as np

    try:
        with np.load(path / ARRAYS_FILE) as arrays:
            return [arrays[f"var_{i}"] for i in range(count)]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _variables(model: Any) -> list[Any]:
    """Every variable a fit changes, in a fixed order: the model's (weights, seed generators'
    states) and its optimizer's (slots, step count)."""
    optimizer = list(model.optimizer.variables) if model.optimizer is not None else []
    return [*model.variables, *optimizer]


def _plain(value: Any) -> Any:
    """A value JSON can hold: ints stay ints (epochs index the history), NumPy floats become floats."""
    if value is None or isinstance(value, int):
        return value
    number = float(value)
    return None if math.isnan(number) else number  # JSON has no NaN; EarlyStopping never keeps one
