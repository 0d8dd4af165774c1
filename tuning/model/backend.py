"""Start TensorFlow: imported once, without the C++ start-up banner it prints on machines with no
GPU, with the configured number of CPU threads."""

from __future__ import annotations

import logging
import os
import sys

from tuning.config.schema import TrainingConfig


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


def start_tensorflow(training: TrainingConfig) -> None:
    """Import TensorFlow (quietly) and apply the ``training`` config's process-wide settings, before
    any op runs: ``threads`` CPU threads and ``graph_optimizations``.

    ``threads: null`` keeps TensorFlow's choice (a pool as large as the machine: measured the fastest
    for one worker). With several workers on one machine, ``threads`` = cores / workers avoids them
    fighting over the same cores. Results do not depend on it (deterministic ops).

    ``graph_optimizations: false`` turns off Grappler, TensorFlow's graph optimizer, which rewrites
    every new function graph the first time it runs: each trial's model makes new train and test
    functions, so the rewrite is paid once per trial (0.1-0.25 s of a 1-epoch fit on 2 quiet cores,
    ~0.5 s under load) and buys nothing measurable per step on an MLP. Values agree with
    Grappler's to float32 rounding (its fused kernels sum in another order).
    """
    import_tensorflow_quietly()
    import tensorflow as tf

    # Public switch of the process-wide optimizer options, read when a function first runs; set
    # either way, so a later run in the same process gets what its own config says.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not training.graph_optimizations})
    threads = training.threads
    if threads is None:
        return
    try:  # a no-op when the pools already have this size
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran ops in this process with other pools
        logging.getLogger(__name__).warning(
            f"training.threads={threads} ignored: TensorFlow already started in this process"
        )
