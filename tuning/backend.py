"""Import TensorFlow once, without the C++ start-up banner it prints on machines with no GPU."""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with file descriptor 2 pointed at /dev/null.

    Its CUDA probe writes "Could not find cuda drivers ..." straight to fd 2 before absl
    logging is set up, so TF_CPP_MIN_LOG_LEVEL cannot silence it. Python exceptions are
    unaffected: they are raised after stderr is restored.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
