"""Start TensorFlow: imported once, without the C++ start-up banner it prints on machines with no
GPU, with the configured number of CPU threads."""

from __future__ import annotations

import logging
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


def start_tensorflow(threads: int | None = None) -> None:
    """Import TensorFlow (quietly) and give it ``threads`` CPU threads, before any op runs.

    ``None`` keeps TensorFlow's choice (a pool as large as the machine: measured the fastest for
    one worker). With several workers on one machine, ``threads`` = cores / workers avoids them
    fighting over the same cores. Results do not depend on it (deterministic ops).
    """
    import_tensorflow_quietly()
    if threads is None:
        return
    import tensorflow as tf

    try:  # a no-op when the pools already have this size
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran ops in this process with other pools
        logging.getLogger(__name__).warning(
            f"training.threads={threads} ignored: TensorFlow already started in this process"
        )
