"""Which worker this process is among those sharing a study, and its own sampler stream."""

from __future__ import annotations

import hashlib
import os

# Set by `tuning sweep workers=N` for each process it starts; a Kubernetes indexed Job and a
# SLURM array set the other two themselves, so the recipes in deploy/ need nothing more.
INDEX_VARIABLES = ("TUNING_WORKER_INDEX", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID")
STREAM_ATTR = "sampler_seed"  # trial user attribute: the seed of the sampler that drew it


def worker_index() -> int | None:
    """This worker's index among those started together (None when nothing says)."""
    for name in INDEX_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def run_suffix() -> str:
    """``-w<k>`` for worker k, so workers started in the same second on one shared folder (a
    cluster volume) each get their own Hydra run folder; empty for a worker alone."""
    index = worker_index()
    return "" if index is None else f"-w{index}"


def worker_key(  # noqa: PLR0913 - what the study says about who else is searching it
    index: int | None,
    *,
    created: bool,
    ran: int,
    others_running: bool,
    worker: str,
    creator_gone: bool = False,
) -> str:
    """What makes this worker's sampler stream its own: ``"0"`` for a worker alone.

    An index given by the launcher wins. Without one, the worker that created the study, and a
    worker resuming a study nobody else is running, are alone (``"0"``: reproducible from
    ``seed`` and the study's trials). A study with no trial yet is resumed when the process that
    made it is gone (``creator_gone``: it was stopped before its first trial). Any other worker
    (it joined a study another worker just made or is running) takes its process identity
    ``host:pid``.
    """
    if index is not None:
        return str(index)
    if created or (not others_running and (ran or creator_gone)):
        return "0"
    return worker


def sampler_seed(seed: int, ran: int, key: str) -> int:
    """The sampler's seed: ``seed`` + the trials already drawn for worker ``"0"`` (a new study:
    ``seed`` itself), else a 31-bit number derived from all three, distinct per worker."""
    if key == "0":
        return seed + ran
    digest = hashlib.sha256(f"{seed}:{ran}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
