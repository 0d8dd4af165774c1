"""Error policy for one trial: its own failure (the trial ends FAIL, the study goes on) or ours
(the sweep stops). Engine-neutral; no TensorFlow import (it is looked up only if already loaded)."""

from __future__ import annotations

import sys
from pathlib import Path

from tuning.errors import TrialFailed


def is_trial_failure(err: BaseException) -> bool:
    """Whether ``err`` is this trial's own failure (the trial ends FAIL, the study goes on).

    Like KerasTuner's FailedTrialError vs FatalError: a trial fails when its model diverges
    (``TrialFailed``), runs out of memory (``MemoryError``, TensorFlow's ResourceExhaustedError and
    other op errors), or cannot be built, compiled or fit with the sampled values (a ValueError,
    TypeError or ArithmeticError raised inside Keras or TensorFlow). Anything else -- raised by
    our own code, by the storage or by tracking -- is a bug or a lost store and stops the sweep.
    """
    if isinstance(err, (TrialFailed, MemoryError)):
        return True
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(err, tf.errors.OpError):
        return True
    if isinstance(err, (ValueError, TypeError, ArithmeticError)):
        return _raised_in_framework(err)
    return False


def _raised_in_framework(err: BaseException) -> bool:
    roots = []
    for name in ("keras", "tensorflow"):
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None) if module is not None else None
        if file:
            roots.append(Path(file).resolve().parent)
    tb = err.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None or not roots:
        return False
    filename = Path(last.tb_frame.f_code.co_filename).resolve()
    return any(filename.is_relative_to(root) for root in roots)
