"""Scheduler decisions by plain calls: events in, decisions out (as Ray tests them)."""

from __future__ import annotations

import pytest

from ember import tune
from ember.tune.schedulers import (ASHAScheduler, FIFOScheduler, HyperBandScheduler,
                                   MedianStoppingRule, PopulationBasedTraining, TrialScheduler)
from ember.tune.trial import Trial

pytestmark = pytest.mark.timeout(30)


def _trial(i: int, **config) -> Trial:
    return Trial(trial_id=f"t{i}", config=config, trainable_name="f", index=i)


def test_fifo_picks_the_oldest_pending_trial_then_paused_ones() -> None:
    trials = [_trial(0), _trial(1), _trial(2)]
    trials[0].status = "RUNNING"
    trials[1].status = "PAUSED"
    assert FIFOScheduler().choose_trial_to_run(None, trials) is trials[2]
    trials[2].status = "TERMINATED"
    assert FIFOScheduler().choose_trial_to_run(None, trials) is trials[1]


def test_asha_stops_a_trial_below_the_rung_cutoff() -> None:
    asha = ASHAScheduler(metric="acc", mode="max", grace_period=1, reduction_factor=2, max_t=8)
    trials = [_trial(i) for i in range(4)]
    for t in trials:
        asha.on_trial_add(None, t)
    # Rung at iteration 1: the first trials set the bar, a worse one then stops.
    assert asha.on_trial_result(None, trials[0], {"training_iteration": 1, "acc": 0.9}) == \
        TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, trials[1], {"training_iteration": 1, "acc": 0.8}) == \
        TrialScheduler.STOP
    assert asha.on_trial_result(None, trials[2], {"training_iteration": 1, "acc": 0.95}) == \
        TrialScheduler.CONTINUE
    # Between rungs nothing is decided; at max_t every trial stops.
    assert asha.on_trial_result(None, trials[0], {"training_iteration": 3, "acc": 0.1}) == \
        TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, trials[2], {"training_iteration": 8, "acc": 1.0}) == \
        TrialScheduler.STOP
    cutoffs = asha.rung_cutoffs()
    assert [r["milestone"] for r in cutoffs] == [8, 4, 2, 1]


def test_asha_in_min_mode_stops_the_larger_loss() -> None:
    asha = ASHAScheduler(metric="loss", mode="min", grace_period=2, reduction_factor=3,
                         max_t=18)
    a, b = _trial(0), _trial(1)
    assert asha.on_trial_result(None, a, {"training_iteration": 2, "loss": 1.0}) == "CONTINUE"
    assert asha.on_trial_result(None, b, {"training_iteration": 2, "loss": 5.0}) == "STOP"


def test_asha_rejects_bad_settings_and_needs_a_metric() -> None:
    with pytest.raises(tune.TuneConfigError, match="reduction_factor"):
        ASHAScheduler(reduction_factor=1)
    with pytest.raises(tune.TuneConfigError, match="max_t"):
        ASHAScheduler(max_t=1, grace_period=5)
    with pytest.raises(tune.TuneConfigError, match="mode"):
        ASHAScheduler(mode="best")
    with pytest.raises(tune.TuneConfigError, match="needs a metric"):
        ASHAScheduler().on_trial_add(None, _trial(0))


def test_hyperband_pauses_at_the_milestone_then_keeps_the_best() -> None:
    hb = HyperBandScheduler(metric="acc", mode="max", max_t=9, reduction_factor=3)
    trials = [_trial(i) for i in range(3)]
    for t in trials:
        hb.on_trial_add(None, t)
    bracket = hb._trial_bracket["t0"]
    r = bracket.r
    decisions = []
    for i, t in enumerate(trials):
        decisions.append(hb.on_trial_result(None, t, {"training_iteration": r,
                                                      "acc": [0.5, 0.9, 0.1][i]}))
        if decisions[-1] == "PAUSE":
            t.status = "PAUSED"
    # With runner=None the search counts as finished, so the bracket halves once all
    # trials reached the milestone: the best goes on.
    assert "PAUSE" in decisions
    assert hb._resumable == {"t1"} or decisions[1] == "CONTINUE"


def test_median_stopping_stops_a_trial_worse_than_the_median() -> None:
    rule = MedianStoppingRule(metric="loss", mode="min", time_attr="training_iteration",
                              grace_period=1, min_samples_required=2)
    good = [_trial(i) for i in range(2)]
    for step in (1, 2):
        for t in good:
            assert rule.on_trial_result(None, t, {"training_iteration": step,
                                                  "loss": 1.0}) == "CONTINUE"
    bad = _trial(9)
    assert rule.on_trial_result(None, bad, {"training_iteration": 1, "loss": 5.0}) == "STOP"


def test_pbt_exploits_a_top_trial_and_explores_its_config() -> None:
    pbt = PopulationBasedTraining(metric="score", mode="max", time_attr="training_iteration",
                                  perturbation_interval=2, quantile_fraction=0.5,
                                  hyperparam_mutations={"lr": [0.001, 0.01, 0.1]}, seed=0)
    top, low = _trial(0, lr=0.01), _trial(1, lr=0.1)
    top.checkpoint = tune.Checkpoint("/tmp/donor_checkpoint")
    for t in (top, low):
        pbt.on_trial_add(None, t)
    assert pbt.on_trial_result(None, top, {"training_iteration": 2, "score": 10}) == "CONTINUE"
    assert pbt.on_trial_result(None, low, {"training_iteration": 2, "score": 1}) == "PAUSE"
    assert low.restore_from == top.checkpoint
    assert low.lineage[0]["cloned_from"] == "t0"
    assert low.config["lr"] in (0.001, 0.01, 0.1)
    assert pbt.num_perturbations == 1


def test_pbt_explore_perturbs_continuous_values_within_bounds() -> None:
    pbt = PopulationBasedTraining(metric="s", mode="max", resample_probability=0.0,
                                  hyperparam_mutations={"lr": tune.uniform(0.0, 1.0),
                                                        "n": tune.randint(1, 100)}, seed=1)
    for _ in range(50):
        new = pbt.explore({"lr": 0.9, "n": 50})
        assert new["lr"] in (pytest.approx(0.72), 1.0)
        assert new["n"] in (60, 40)


def test_pbt_needs_mutations() -> None:
    with pytest.raises(tune.TuneConfigError, match="hyperparam_mutations"):
        PopulationBasedTraining(metric="s", mode="max")
