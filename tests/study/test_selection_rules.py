"""The selection rules and their config checks, on records (no training): what each mode picks,
the Pareto front against a brute-force one, and the one-line refusals (exit 2, nothing written)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from conftest import TINY, cli, settings

from tuning.config.selection import Selection, parse_selection
from tuning.errors import ConfigError
from tuning.study.selection import pareto_ranks, pick, trial_marks
from tuning.study.summary import StudySummary, TrialSummary


def study(
    points: list[tuple[float, float]], mode: str = "best", max_gap: float | None = None, direction="minimize"
):
    trials = [
        TrialSummary(number=i, state="COMPLETE", value=v, user_attrs={"gap_log_loss": g})
        for i, (v, g) in enumerate(points)
    ]
    trials.append(TrialSummary(number=len(points), state="PRUNED", value=0.0, user_attrs={}))
    attrs = {"metric": "val_log_loss", "selection": {"mode": mode, "max_gap": max_gap}}
    return StudySummary("s", direction, attrs, trials)


POINTS = [(0.50, 0.20), (0.55, 0.04), (0.60, 0.01), (0.58, 0.06), (0.70, -0.02), (0.52, 0.10)]


def test_constrained_picks_the_best_feasible_trial():
    s = study(POINTS, "constrained", 0.05)
    chosen, reason = pick(s, Selection("constrained", 0.05))
    assert chosen.number == 1  # 0.55 with gap 0.04; trial 0 (0.50) overfits by 0.20
    assert "among the 3 trial(s) with gap_log_loss <= 0.05" in reason
    marks = trial_marks(s)
    assert [marks[i]["feasible"] for i in range(6)] == [False, True, True, False, True, False]


def test_constrained_with_none_feasible_falls_back_to_the_smallest_violation():
    s = study([(0.5, 0.3), (0.6, 0.12), (0.4, 0.5)], "constrained", 0.1)
    chosen, reason = pick(s, Selection("constrained", 0.1))
    assert chosen.number == 1
    assert reason.startswith(
        "no trial has gap_log_loss <= 0.1: picked the smallest violation (gap_log_loss +0.02"
    )


def test_pareto_front_matches_brute_force_and_the_pick_rule():
    s = study(POINTS, "pareto", 0.05)
    ranks = pareto_ranks(s)
    overfit = {i: (v, max(g, 0.0)) for i, (v, g) in enumerate(POINTS)}
    front = {
        i
        for i, p in overfit.items()
        if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in overfit.values())
    }
    assert {i for i, r in ranks.items() if r == 0} == front == {0, 1, 2, 4, 5}
    assert 3 not in front and ranks[3] == 1  # dominated by trial 1 (better score, smaller gap)
    chosen, _ = pick(s, Selection("pareto", 0.05))
    assert chosen.number == 1  # best score on the front with gap <= 0.05
    assert pick(s, Selection("pareto", None))[0].number == 0  # no tolerance: the front's best score
    assert pick(s, Selection("pareto", -0.5))[0].number == 4  # none within: the smallest gap


def test_maximized_metrics_flip_the_score_but_not_the_gap():
    s = study([(0.9, 0.2), (0.8, 0.01)], "constrained", 0.05, direction="maximize")
    assert pick(s, Selection("constrained", 0.05))[0].number == 1
    assert pick(s, Selection("best"))[0].number == 0


def test_pruned_and_failed_trials_are_never_picked():
    s = study([(0.5, 0.0)], "pareto", None)
    for mode in ("constrained", "pareto"):
        assert pick(s, Selection(mode, 0.1))[0].number == 0


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["selection=constrained", "selection.max_gap=-0.1"], "error: selection.max_gap: -0.1 is below 0"),
        (["selection=constrained", "selection.max_gap=null"], "error: selection.max_gap: is required"),
        (["cv.folds=1"], "error: cv.folds: 1; must be an integer >= 2"),
        (["selection=pareto", "sampler=cmaes"], "error: sampler: cmaes optimizes one objective"),
        (["selection=nope"], "error: selection"),
    ],
)
def test_bad_selection_or_folds_is_one_line_exit_2_nothing_written(in_tmp, capsys, overrides, expected):
    assert cli(["sweep", *TINY, *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith(expected), err
    assert not Path("experiments").exists()


def test_selection_other_than_best_needs_the_optuna_engine():
    cfg = settings("selection=pareto")
    cfg["engine"] = {"name": "keras_tuner"}
    with pytest.raises(
        ConfigError, match="pareto needs engine=optuna; engine=keras_tuner supports selection=best only"
    ):
        parse_selection(cfg)
    cfg["selection"] = {"name": "best"}
    assert parse_selection(cfg).mode == "best"


def test_default_selection_and_folds_leave_the_identity_unchanged():
    from tuning.study.identity import study_identity

    plain = study_identity(settings())
    assert not any(k.startswith(("selection.", "cv.")) for k in plain)
    constrained = study_identity(settings("selection=constrained", "cv.folds=3"))
    assert constrained["selection.name"] == "constrained" and constrained["cv.folds"] == 3
    assert set(constrained) - set(plain) == {"selection.name", "selection.max_gap", "cv.folds"}


def test_pareto_ranks_are_layers():
    points = [(a / 10, b / 10) for a, b in itertools.product(range(3), range(3))]
    ranks = pareto_ranks(study(points))
    assert {i for i, r in ranks.items() if r == 0} == {0}  # (0, 0) dominates every other point
    assert max(ranks.values()) == 4  # anti-diagonals a + b = 0..4
