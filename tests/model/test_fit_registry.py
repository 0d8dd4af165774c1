"""The one private TensorFlow API the package uses: its gradient registry, cleaned between trials.

``tuning.model.fit._forget_custom_gradients`` keeps a sweep's memory flat (experiments/benchmarks/
memory.py: +3.3 MB per trial without it). It does nothing when TensorFlow moves the registry, so
this test is what notices: it fails when the registry is gone or entries are no longer removed.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tuning.model.build import build_model
from tuning.model.fit import _forget_custom_gradients, _gradient_registry, fresh_session

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow only")


def custom_gradients() -> list[str]:
    registry = _gradient_registry()
    assert registry is not None, (
        "tensorflow.python.framework.ops._gradient_registry._registry moved: "
        "tuning.model.fit._forget_custom_gradients no longer frees each trial's graph; find its new place"
    )
    return [name for name in registry if name.startswith("CustomGradient-")]


@pytest.mark.slow
def test_a_real_fit_registers_custom_gradients_and_the_cleanup_removes_them():
    fresh_session()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = build_model(3, "binary", 2, units=[4])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    registered = custom_gradients()
    # If Keras stops using tf.custom_gradient, the cleanup has nothing left to do: say so.
    assert registered, "a fit registered no CustomGradient-* entry: is the cleanup still needed?"

    _forget_custom_gradients()
    assert custom_gradients() == []
    # The registry itself stays usable: TensorFlow's own gradients are all still there.
    assert "MatMul" in _gradient_registry()
