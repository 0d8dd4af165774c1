"""The tutorial's example: plants A/B from height and number of branches, a curved boundary."""

from __future__ import annotations

import numpy as np
import pandas as pd


def load_plants(n_samples: int = 3000, noise: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Generate the plants table deterministically from ``seed``.

    Species B grows in a band of medium height whose branch count rises with height (a
    curved, ring-like region); everything else is species A. No straight line separates
    them. ``noise`` is the fraction of labels flipped at random.
    """
    if n_samples < 10:
        raise ValueError("n_samples must be at least 10")
    rng = np.random.default_rng(seed)
    height = rng.uniform(10.0, 200.0, n_samples)  # cm
    branches = rng.integers(0, 31, n_samples).astype(float)
    h = (height - 105.0) / 55.0
    b = (branches - 15.0) / 9.0
    radius = np.sqrt(h**2 + (b - 0.4 * h**2) ** 2)
    is_b = (radius > 0.45) & (radius < 1.05)
    flip = rng.random(n_samples) < noise
    label = np.where(is_b ^ flip, "B", "A")
    return pd.DataFrame({"height": height.round(1), "branches": branches.astype(int), "species": label})
