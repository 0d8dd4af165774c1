"""What per-epoch checkpoints (training.checkpoints=true) cost: seconds per epoch and disk.

The same trial (fixed params and seed) is fitted with and without ``EpochCheckpoint``,
interleaved in one process (off, on, off, on, ...), so load on the machine hits both arms alike.
Printed: the median seconds per fit of each arm with its spread (min-max), the median extra
seconds per epoch, and the size of one checkpoint (the folder a running trial keeps) for the
benchmark's model and for the largest model of the default space (three layers of 128 units).

    python experiments/benchmarks/checkpoints.py            # 5 rounds of 20 epochs on plants
    python experiments/benchmarks/checkpoints.py --rounds 9
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

EPOCHS = 20


def setup() -> tuple[object, object]:
    from conftest import settings

    from tuning.config import parse
    from tuning.data import load_dataset

    parsed = parse(settings("data=plants", "data.n_samples=400", "tracking=none", tiny=False))
    return parsed.training, load_dataset(parsed.data, parsed.split, parsed.seed)


def fit(training: object, dataset: object, units: tuple[int, ...], folder: Path | None) -> float:
    """Seconds for one fit of ``EPOCHS`` epochs; with ``folder``, checkpointed into it."""
    from dataclasses import replace

    from tuning.config.space import Hyperparameters
    from tuning.search.checkpoints import EpochCheckpoint
    from tuning.search.trial import fit_trial

    hp = Hyperparameters(units=units, dropout=0.1, batch_size=32, epochs=EPOCHS, learning_rate=1e-3)
    training = replace(training, max_epochs=EPOCHS)  # type: ignore[type-var]
    callbacks = [EpochCheckpoint(folder, 0)] if folder is not None else []
    start = time.perf_counter()
    fit_trial(hp, dataset, training, seed=1, callbacks=callbacks)  # type: ignore[arg-type]
    return time.perf_counter() - start


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    training, dataset = setup()
    work = Path(tempfile.mkdtemp())
    try:
        fit(training, dataset, (32, 16), None)  # warm-up: TensorFlow's first trace
        off, on = [], []
        for i in range(args.rounds):
            off.append(fit(training, dataset, (32, 16), None))
            on.append(fit(training, dataset, (32, 16), work / f"r{i}"))
        small = size(work / "r0")
        fit(training, dataset, (128, 128, 128), work / "large")
        large = size(work / "large")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, xs in (("checkpoints off", off), ("checkpoints on", on)):
        print(
            f"{name:16s} median {statistics.median(xs):.3f} s per {EPOCHS}-epoch fit (min {min(xs):.3f}, max {max(xs):.3f})"
        )
    extra = (statistics.median(on) - statistics.median(off)) / EPOCHS
    print(
        f"extra per epoch: {extra * 1000:.1f} ms (ratio on/off {statistics.median(on) / statistics.median(off):.2f})"
    )
    print(f"one checkpoint: {small / 1024:.0f} KiB (units 32,16), {large / 1024:.0f} KiB (units 128,128,128)")


if __name__ == "__main__":
    main()
