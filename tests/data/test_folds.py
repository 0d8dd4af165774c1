"""k-fold splits for cv.folds: cut from train + validation only, stratified, preprocessing refit
per fold, and refused (one line) when a class has fewer rows than folds."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import settings

from tuning.config import DataConfig
from tuning.config.schema import SplitConfig
from tuning.data import load_dataset
from tuning.data.folds import check_fold_count, make_folds
from tuning.errors import ConfigError


def dataset(*overrides: str):
    cfg = settings(*overrides, tiny=False)
    return load_dataset(DataConfig.parse(cfg["data"]), SplitConfig.parse(cfg["split"]), int(cfg["seed"]))


def test_folds_never_hold_test_rows_and_cover_train_plus_validation():
    ds = dataset("data=iris")
    folds = make_folds(ds, 4, seed=0)
    test = set(ds.rows["test"])
    dev = set(ds.rows["train"]) | set(ds.rows["val"])
    vals = [set(f.rows["val"]) for f in folds]
    for fold, val in zip(folds, vals, strict=True):
        assert not (set(fold.rows["train"]) | val) & test
        assert set(fold.rows["train"]) | val == dev and not set(fold.rows["train"]) & val
        assert len(fold.y_test) == 0
    assert set().union(*vals) == dev and sum(map(len, vals)) == len(dev)
    # Stratified: every validation part holds each class in (almost) the same share.
    for fold in folds:
        counts = np.bincount(fold.y_val, minlength=3)
        assert counts.max() - counts.min() <= 1


def test_preprocessing_is_fitted_on_each_folds_training_rows_only():
    ds = dataset("data=diabetes")
    folds = make_folds(ds, 3, seed=0)
    for fold in folds:
        train_rows = np.isin(np.concatenate([ds.rows["train"], ds.rows["val"]]), fold.rows["train"])
        raw = ds.dev_frame[train_rows]
        # standardized on the fold's own training rows: mean 0 there, not on the validation rows
        assert np.allclose(fold.x_train.mean(axis=0), 0.0, atol=1e-5)
        assert np.allclose(
            fold.preprocessor.transformer_.transformers_[0][1][-1].mean_, raw.mean().to_numpy()
        )
        assert fold.target_scaler.mean_[0] == pytest.approx(float(ds.dev_y[train_rows].mean()), rel=1e-5)
    assert not np.allclose(folds[0].x_val.mean(axis=0), 0.0, atol=1e-5)


def test_more_folds_than_the_smallest_class_has_rows_is_refused():
    ds = dataset("data=iris")
    smallest = int(np.bincount(ds.dev_y).min())
    check_fold_count(ds, smallest)
    with pytest.raises(ConfigError) as err:
        check_fold_count(ds, smallest + 1)
    assert str(err.value) == (
        f"cv.folds: {smallest + 1} is more than the {smallest} rows of the smallest class "
        f"'{ds.class_names[int(np.argmin(np.bincount(ds.dev_y)))]}' in train + validation; use 2..{smallest}"
    )


def test_the_data_line_says_what_k_fold_scores_on():
    ds = dataset("data=iris")
    assert ds.summary(4) == (
        f"data 'iris': multiclass, 4 features, k-fold on train+validation (k=4, {len(ds.dev_y)} rows), "
        f"test {len(ds.y_test)} held out, classes {ds.class_names}"
    )
    assert f"train {len(ds.y_train)} / val {len(ds.y_val)} / test {len(ds.y_test)} rows" in ds.summary()
