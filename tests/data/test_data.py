"""The data layer: sources, task inference, splits, leak-free preprocessing, clear errors.

Fast and TensorFlow-free: every table is generated here and written to tmp_path.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from tuning.config import DataConfig
from tuning.config.schema import SplitConfig
from tuning.data import dataset_name, load_dataset, transform_features
from tuning.data.plants import load_plants
from tuning.data.prepare import infer_task
from tuning.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf" / "data"
SPLIT = SplitConfig(0.2, 0.2)


def customers(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A customer table: an ID column, numbers with gaps, a category, a bool, a text target."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    age[rng.random(n) < 0.1] = np.nan
    income = rng.normal(50_000, 15_000, n).round(2)
    income[rng.random(n) < 0.1] = np.nan
    plan = rng.choice(["basic", "pro", "team"], n).astype(object)
    plan[rng.random(n) < 0.05] = None
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "age": age,
            "income": income,
            "plan": plan,
            "member": rng.random(n) < 0.5,
            "churned": np.where(rng.random(n) < 0.3, "yes", "no"),
        }
    )


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    return path


def csv_config(path: Path | str, target: str = "churned", **options: Any) -> dict[str, Any]:
    """The csv.yaml defaults with ``path``, ``target`` and ``options`` set."""
    data = OmegaConf.to_container(OmegaConf.load(CONF / "csv.yaml"))
    assert isinstance(data, dict)
    data.update(path=str(path), target=target, **options)
    return data


def load_csv_table(frame: pd.DataFrame, tmp_path: Path, name: str = "table.csv", **options: Any):
    return load_dataset(DataConfig.parse(csv_config(write(frame, tmp_path / name), **options)), SPLIT, seed=0)


def error(exc: type[Exception], data: Any, split: Any = SPLIT) -> ConfigError:
    """The error ``load_dataset`` raises, checked to print as one line."""
    with pytest.raises(exc) as info:
        load_dataset(DataConfig.parse(data), split, seed=0)
    assert "\n" not in str(info.value)
    return info.value


# --- sources -----------------------------------------------------------------------------

BUILT_IN = {
    # config file: (task, features, total rows, class names or None)
    "plants": ("binary", 2, 3000, ["A", "B"]),
    "moons": ("binary", 2, 1000, ["0", "1"]),
    "circles": ("binary", 2, 1000, ["0", "1"]),
    "classification": ("binary", 20, 1000, ["0", "1"]),
    "regression": ("regression", 10, 1000, None),
    "sklearn": ("binary", 30, 569, ["malignant", "benign"]),
    "breast_cancer": ("binary", 30, 569, ["malignant", "benign"]),
    "iris": ("multiclass", 4, 150, ["setosa", "versicolor", "virginica"]),
    "wine": ("multiclass", 13, 178, ["class_0", "class_1", "class_2"]),
    "digits": ("multiclass", 64, 1797, [str(d) for d in range(10)]),
    "diabetes": ("regression", 10, 442, None),
}


@pytest.mark.parametrize("config", sorted(BUILT_IN))
def test_every_built_in_source_loads_with_its_task_and_shapes(config: str) -> None:
    task, n_features, rows, class_names = BUILT_IN[config]
    ds = load_dataset(DataConfig.parse(OmegaConf.load(CONF / f"{config}.yaml")), SPLIT, seed=0)
    assert ds.task == task
    assert ds.class_names == class_names
    assert ds.x_train.shape[1] == ds.x_val.shape[1] == ds.x_test.shape[1] == n_features
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == rows
    assert len(ds.y_test) == int(np.ceil(0.2 * rows))
    assert ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == (np.float32 if task == "regression" else np.int32)
    assert len(ds.feature_names) == n_features


def test_generator_options_are_used() -> None:
    data = OmegaConf.load(CONF / "classification.yaml")
    data.merge_with({"n_samples": 300, "n_features": 6, "n_informative": 3, "n_classes": 4})
    ds = load_dataset(DataConfig.parse(data), SPLIT, seed=0)
    assert ds.task == "multiclass"
    assert ds.class_names == ["0", "1", "2", "3"]
    assert ds.n_features == 6
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 300

    moons = load_dataset(
        DataConfig.parse({"source": "moons", "name": "m", "n_samples": 5000, "noise": 0.3}), SPLIT, 0
    )
    assert len(moons.y_train) == 3000


def test_plants_rows_and_splits_are_unchanged() -> None:
    frame = load_plants(seed=0)
    assert frame.iloc[0].tolist() == [131.0, 27, "A"]
    assert frame.iloc[2].tolist() == [17.8, 16, "A"]
    ds = load_dataset(DataConfig.parse(OmegaConf.load(CONF / "plants.yaml")), SPLIT, seed=0)
    assert ds.summary() == (
        "data 'plants': binary, 2 features, train 1800 / val 600 / test 600 rows, classes ['A', 'B']"
    )
    assert ds.y_train[:5].tolist() == [1, 0, 0, 0, 0]
    np.testing.assert_allclose(ds.x_train[0], [0.83291775, 0.337597], rtol=1e-6)


def test_every_data_config_key_is_commented() -> None:
    for file in CONF.glob("*.yaml"):
        for line in file.read_text().splitlines():
            if line and not line.startswith("#"):
                assert "#" in line, f"{file.name}: '{line}' has no comment"


def test_dataset_name_needs_no_loading() -> None:
    assert dataset_name({"source": "csv", "path": "data/customers.csv", "name": None}) == "customers"
    assert dataset_name({"source": "csv", "path": "x.parquet", "name": "churn"}) == "churn"
    assert dataset_name(OmegaConf.load(CONF / "moons.yaml")) == "moons"
    with pytest.raises(ConfigError) as info:
        dataset_name(OmegaConf.load(CONF / "csv.yaml"))
    assert info.value.key == "data.path"


def test_data_layer_does_not_import_tensorflow() -> None:
    code = (
        "import sys; from tuning.config import DataConfig; from tuning.config.schema import SplitConfig; "
        "from tuning.data import load_dataset; "
        "load_dataset(DataConfig.parse({'source': 'moons', 'name': 'm'}), SplitConfig(0.2, 0.2), 0); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- csv and parquet tables ----------------------------------------------------------------


def test_csv_end_to_end(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(customers(), tmp_path / "customers.csv")
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(DataConfig.parse(csv_config(path)), SPLIT, seed=0)
    assert ds.name == "customers"
    assert ds.task == "binary"
    assert ds.class_names == ["no", "yes"]
    assert ds.target == "churned"
    # The ID column is dropped with a warning; the rest are kept.
    assert ds.columns == ["age", "income", "plan", "member"]
    assert "customer_id" in ds.info["columns_dropped"]
    assert "dropping column 'customer_id'" in caplog.text
    assert ds.feature_names == [
        "age",
        "income",
        "plan_basic",
        "plan_pro",
        "plan_team",
        "member_False",
        "member_True",
    ]
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (120, 40, 40)
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert x.dtype == np.float32
        assert not np.isnan(x).any()
        # every row has exactly one plan and one member value, missing ones imputed
        np.testing.assert_array_equal(x[:, 2:5].sum(axis=1), 1.0)
        np.testing.assert_array_equal(x[:, 5:7].sum(axis=1), 1.0)


def test_features_and_drop_pick_columns(tmp_path: Path) -> None:
    table = customers()
    ds = load_csv_table(table, tmp_path, features=["age", "plan", "customer_id"], drop=["customer_id"])
    assert ds.columns == ["age", "plan"]
    ds = load_csv_table(table, tmp_path, drop=["plan", "member"])
    assert ds.columns == ["age", "income"]


def test_parquet_reads_like_csv(tmp_path: Path) -> None:
    table = customers()
    from_csv = load_csv_table(table, tmp_path, "t.csv")
    for name in ("t.parquet", "t.pq"):
        ds = load_csv_table(table, tmp_path, name)
        assert ds.feature_names == from_csv.feature_names
        np.testing.assert_allclose(ds.x_train, from_csv.x_train, rtol=1e-6)
        np.testing.assert_array_equal(ds.y_test, from_csv.y_test)


def test_tsv_and_custom_separator(tmp_path: Path) -> None:
    table = customers()
    tsv = load_csv_table(table, tmp_path, "t.tsv")
    assert tsv.columns == ["age", "income", "plan", "member"]
    (tmp_path / "t.txt").write_text(table.to_csv(index=False, sep=";"))
    txt = load_dataset(DataConfig.parse(csv_config(tmp_path / "t.txt", sep=";")), SPLIT, seed=0)
    np.testing.assert_allclose(txt.x_train, tsv.x_train, rtol=1e-6)


def test_rows_without_target_are_dropped_with_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = customers()
    table.loc[[3, 10, 50, 51, 199], "churned"] = None
    with caplog.at_level(logging.WARNING):
        ds = load_csv_table(table, tmp_path)
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 195
    assert ds.info["rows_dropped"] == 5
    assert "dropped 5 of 200 rows" in caplog.text


def test_hydra_overrides_reach_the_csv_loader(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    path = write(customers(), tmp_path / "customers.csv")
    overrides = [
        "+data=csv",
        f"data.path={path}",
        "data.target=churned",
        "data.drop=[customer_id,member]",
    ]
    with initialize_config_dir(config_dir=str(CONF.parent), version_base=None):
        cfg = compose(overrides=overrides)
    ds = load_dataset(DataConfig.parse(cfg.data), SPLIT, seed=0)
    assert ds.columns == ["age", "income", "plan"]


# --- task inference ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["yes", "no", "yes"], "binary"),
        ([True, False, True], "binary"),
        ([0, 1, 1, 0], "binary"),
        ([-1.0, 1.0, 1.0], "binary"),
        (["a", "b", "c"], "multiclass"),
        ([0, 1, 2, 3, 4], "multiclass"),
        ([1.0, 2.0, 3.0, 2.0], "multiclass"),
        (pd.Categorical([5, 6, 7, 8]), "multiclass"),
        (list(range(25)), "regression"),
        ([0.5, 1.25, 3.0], "regression"),
    ],
)
def test_task_is_inferred_from_the_target(values: Any, task: str) -> None:
    assert infer_task(pd.Series(values)) == task


def _ratings(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rating = rng.integers(1, 6, n)
    return pd.DataFrame({"x": rating + rng.normal(0, 0.5, n), "rating": rating})


def test_task_override(tmp_path: Path) -> None:
    table = _ratings()
    inferred = load_csv_table(table, tmp_path, target="rating")
    assert inferred.task == "multiclass"
    assert inferred.class_names == ["1", "2", "3", "4", "5"]
    assert inferred.info["task_inferred"] is True

    ds = load_csv_table(table, tmp_path, target="rating", task="regression")
    assert ds.task == "regression"
    assert ds.class_names is None
    assert ds.y_train.dtype == np.float32
    assert set(np.unique(ds.y_train)) == {1.0, 2.0, 3.0, 4.0, 5.0}

    two = load_csv_table(customers(), tmp_path, task="multiclass")
    assert two.task == "multiclass"
    assert two.class_names == ["no", "yes"]


# --- splits ----------------------------------------------------------------------------------


def test_classification_splits_are_stratified(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 1000
    label = np.where(rng.random(n) < 0.1, "rare", "common")
    table = pd.DataFrame({"x": rng.normal(size=n), "label": label})
    ds = load_csv_table(table, tmp_path, target="label")
    overall = (label == "rare").mean()
    rare = ds.class_names.index("rare")
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert abs((y == rare).mean() - overall) < 1.5 / len(y)


def test_splits_are_seeded(tmp_path: Path) -> None:
    data = csv_config(write(customers(), tmp_path / "c.csv"))
    first, again = (
        load_dataset(DataConfig.parse(data), SPLIT, seed=3),
        load_dataset(DataConfig.parse(data), SPLIT, seed=3),
    )
    other = load_dataset(DataConfig.parse(data), SPLIT, seed=4)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.x_test, other.x_test)


def test_split_fractions_are_configurable(tmp_path: Path) -> None:
    data = csv_config(write(customers(), tmp_path / "c.csv"))
    ds = load_dataset(DataConfig.parse(data), SplitConfig(0.1, 0.3), seed=0)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (120, 20, 60)


def test_fixed_test_file(tmp_path: Path) -> None:
    table = customers(250)
    main, test = table.iloc[:200], table.iloc[200:].copy()
    test.loc[test.index[:5], "plan"] = "enterprise"  # a category the training rows never saw
    data = csv_config(write(main, tmp_path / "main.csv"), test_path=str(write(test, tmp_path / "test.csv")))
    ds = load_dataset(DataConfig.parse(data), SplitConfig(0.25, 0.9), seed=0)  # split.test is ignored
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (150, 50, 50)
    expected = np.where(test["churned"] == "yes", 1, 0)
    np.testing.assert_array_equal(ds.y_test, expected)
    plan = [ds.feature_names.index(f"plan_{p}") for p in ("basic", "pro", "team")]
    # the unseen category encodes as all zeros, known ones as a single 1
    np.testing.assert_array_equal(ds.x_test[:5][:, plan], 0.0)
    np.testing.assert_array_equal(ds.x_test[5:][:, plan].sum(axis=1), 1.0)
    assert ds.info["split"] == {"val": 0.25, "test": "file"}


# --- leakage and reuse of the fitted preprocessing ----------------------------------------------


def test_preprocessing_is_fitted_on_training_rows_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    value = rng.normal(10, 3, n)
    value[::7] = np.nan
    color = np.array(["red", "green", "blue"] * (n // 3), dtype=object)
    table = pd.DataFrame({"row": np.arange(n), "value": value, "color": color, "y": rng.integers(0, 2, n)})
    ds = load_csv_table(table, tmp_path, target="y")
    num = ds.preprocessor.transformer_.named_transformers_["num"]
    scaler, imputer = num.named_steps["scale"], num.named_steps["impute"]
    # The scaled 'row' column maps back to the table's row numbers: the training rows.
    rows = np.rint(ds.x_train[:, 0] * scaler.scale_[0] + scaler.mean_[0]).astype(int)
    assert len(set(rows)) == len(ds.y_train) == 180
    train = table.iloc[rows]
    train_value = train["value"].fillna(train["value"].median())
    np.testing.assert_allclose(imputer.statistics_, [train["row"].median(), train["value"].median()])
    np.testing.assert_allclose(scaler.mean_, [train["row"].mean(), train_value.mean()])
    np.testing.assert_allclose(scaler.scale_, [train["row"].std(ddof=0), train_value.std(ddof=0)])
    assert abs(scaler.mean_[1] - table["value"].fillna(table["value"].median()).mean()) > 1e-6
    np.testing.assert_array_equal(ds.y_train, train["y"].to_numpy())


def test_fitted_preprocessor_round_trips_through_joblib(tmp_path: Path) -> None:
    table = customers()
    ds = load_csv_table(table, tmp_path)
    joblib.dump(ds.preprocessor, tmp_path / "pre.joblib")
    loaded = joblib.load(tmp_path / "pre.joblib")
    raw = pd.read_csv(tmp_path / "table.csv")
    expected = ds.preprocessor.transform(raw)
    np.testing.assert_array_equal(loaded.transform(raw), expected)
    # Column order and extra columns do not matter; the target is not needed.
    shuffled = raw.drop(columns=["churned"])[["plan", "member", "customer_id", "income", "age"]]
    np.testing.assert_array_equal(transform_features(loaded, ds.columns, shuffled), expected)
    assert expected.dtype == np.float32 and expected.shape == (200, 7)


def test_transform_features_names_missing_columns(tmp_path: Path) -> None:
    ds = load_csv_table(customers(), tmp_path)
    raw = pd.read_csv(tmp_path / "table.csv").drop(columns=["plan", "income"])
    with pytest.raises(DataError) as info:
        transform_features(ds.preprocessor, ds.columns, raw, key="new.csv")
    assert info.value.key == "new.csv"
    assert "missing columns: income, plan" in info.value.message
    with pytest.raises(DataError, match="missing columns: income, plan"):
        ds.preprocessor.transform(raw)


# --- errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    err = error(DataError, csv_config(tmp_path / "nope.csv"))
    assert err.key == "data.path"
    assert "file not found" in err.message and "nope.csv" in err.message


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "broken.parquet").write_bytes(b"not a parquet file")
    err = error(DataError, csv_config(tmp_path / "broken.parquet"))
    assert err.key == "data.path"
    assert err.message.startswith("cannot read") and "broken.parquet" in err.message
    (tmp_path / "latin.csv").write_bytes(b"a,churned\n\xff\xfe,yes\n")
    assert error(DataError, csv_config(tmp_path / "latin.csv")).message.startswith("cannot read")
    (tmp_path / "folder.csv").mkdir()
    assert "not a file" in error(DataError, csv_config(tmp_path / "folder.csv")).message


def test_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "table.xlsx").write_bytes(b"")
    err = error(DataError, csv_config(tmp_path / "table.xlsx"))
    assert err.key == "data.path"
    assert "unknown format '.xlsx'" in err.message and ".csv, .tsv, .txt, .parquet, .pq" in err.message


def test_required_keys(tmp_path: Path) -> None:
    data = OmegaConf.load(CONF / "csv.yaml")
    assert error(ConfigError, data).key == "data.path"
    data.path = str(write(customers(), tmp_path / "c.csv"))
    err = error(ConfigError, data)
    assert err.key == "data.target" and "is required" in err.message


def test_target_column_missing(tmp_path: Path) -> None:
    err = error(DataError, csv_config(write(customers(), tmp_path / "c.csv"), target="churn"))
    assert err.key == "data.target"
    assert "'churn' not found" in err.message
    assert "customer_id, age, income, plan, member, churned" in err.message


def test_target_with_a_single_class(tmp_path: Path) -> None:
    table = customers().assign(churned="yes")
    err = error(DataError, csv_config(write(table, tmp_path / "c.csv")))
    assert err.key == "data.target"
    assert "single value ('yes')" in err.message


def test_target_all_missing(tmp_path: Path) -> None:
    table = customers(20).assign(churned=np.nan)
    err = error(DataError, csv_config(write(table, tmp_path / "c.csv")))
    assert err.key == "data.target"
    assert "no values" in err.message and "all 20 rows are missing" in err.message


def test_too_few_rows_for_the_splits(tmp_path: Path) -> None:
    table = customers(40).iloc[:5].assign(churned=["yes", "no", "yes", "no", "yes"])
    path = write(table, tmp_path / "tiny.csv")
    err = error(DataError, csv_config(path))
    assert err.key == str(path)
    assert "5 rows are too few" in err.message and "train 3, val 1, test 1" in err.message
    assert "at least 2 row(s) (one row per class)" in err.message

    err = error(DataError, {"source": "moons", "name": "m", "n_samples": 4, "noise": 0.1})
    assert err.key == "data.n_samples" and "4 rows are too few" in err.message


def test_class_too_small_to_stratify(tmp_path: Path) -> None:
    table = customers()
    table.loc[:1, "churned"] = "maybe"  # two rows: one per split is impossible
    err = error(DataError, csv_config(write(table, tmp_path / "c.csv")))
    assert err.key == "data.target"
    assert "class 'maybe' has only 2 row(s)" in err.message


def test_no_usable_feature_columns(tmp_path: Path) -> None:
    table = customers()[["customer_id", "churned"]].assign(empty=np.nan)
    err = error(DataError, csv_config(write(table, tmp_path / "c.csv")))
    assert err.key == "data.features"
    assert "no usable feature columns" in err.message
    assert "'customer_id': ID-like" in err.message and "'empty': no values" in err.message


def test_regression_target_must_be_numeric(tmp_path: Path) -> None:
    err = error(DataError, csv_config(write(customers(), tmp_path / "c.csv"), task="regression"))
    assert err.key == "data.target"
    assert "must be numeric" in err.message and "'churned'" in err.message and "'no'" in err.message


def test_binary_task_needs_two_classes(tmp_path: Path) -> None:
    err = error(DataError, csv_config(write(_ratings(), tmp_path / "r.csv"), "rating", task="binary"))
    assert err.key == "data.task"
    assert "exactly 2 classes" in err.message and "has 5" in err.message


def test_unknown_sklearn_data_set() -> None:
    err = error(ConfigError, {"source": "sklearn", "name": "titanic"})
    assert err.key == "data.name"
    assert "'titanic'" in err.message and "breast_cancer, diabetes, digits, iris, wine" in err.message
    assert "use data=moons" in error(ConfigError, {"source": "sklearn", "name": "moons"}).message


def test_unknown_feature_and_drop_columns(tmp_path: Path) -> None:
    path = write(customers(), tmp_path / "c.csv")
    err = error(DataError, csv_config(path, features=["age", "height", "weight"]))
    assert err.key == "data.features"
    assert "unknown columns: height, weight" in err.message and "customer_id" in err.message
    err = error(DataError, csv_config(path, drop=["id"]))
    assert err.key == "data.drop" and "unknown columns: id" in err.message
    err = error(DataError, csv_config(path, drop=["churned"]))
    assert err.key == "data.drop" and "cannot drop the target" in err.message


def test_fixed_test_file_errors(tmp_path: Path) -> None:
    table = customers(250)
    main = write(table.iloc[:200], tmp_path / "main.csv")
    odd = table.iloc[200:].assign(churned="maybe").drop(columns=["income"])
    test = write(odd, tmp_path / "test.csv")
    err = error(DataError, csv_config(main, test_path=str(test)))
    assert err.key == "data.test_path" and "missing columns: income" in err.message
    write(odd.assign(income=1.0), test)
    err = error(DataError, csv_config(main, test_path=str(test)))
    assert err.key == "data.test_path" and "not in the training data: maybe" in err.message
    err = error(DataError, csv_config(main, test_path=str(tmp_path / "gone.csv")))
    assert err.key == "data.test_path" and "file not found" in err.message


@pytest.mark.parametrize(
    ("split", "key"),
    [
        ({"val": 0, "test": 0.2}, "split.val"),
        ({"val": 0.2, "test": 1.0}, "split.test"),
        ({"val": "a lot", "test": 0.2}, "split.val"),
        ({"test": 0.2}, "split.val"),
        ({"val": 0.5, "test": 0.5}, "split.test"),
    ],
)
def test_split_fractions_are_validated(split: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        SplitConfig.parse(split)
    assert info.value.key == key and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "key", "text"),
    [
        ({"source": "excel"}, "data.source", "'excel' is not one of: circles, classification, csv"),
        ({"source": "moons", "task": "ranking"}, "data.task", "'ranking' is not one of"),
        ({"source": "moons", "n_samples": 0}, "data.n_samples", "integer >= 1, got 0"),
        ({"source": "moons", "noise": -1}, "data.noise", "must be in [0.0, inf]"),
        ({"source": "circles", "factor": 1.5}, "data.factor", "must be below 1"),
        ({"source": "classification", "n_features": 4}, "data.n_informative", "<= n_features (4)"),
        ({"source": "classification", "n_classes": 17}, "data.n_classes", "2**n_informative (32)"),
        ({"source": "regression", "n_informative": 11}, "data.n_informative", "<= n_features (10)"),
    ],
)
def test_bad_source_options(data: dict[str, Any], key: str, text: str) -> None:
    err = error(ConfigError, {"name": "x", **data})
    assert err.key == key
    assert text in err.message
