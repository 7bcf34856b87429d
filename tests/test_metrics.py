"""Tests of stabgap.metrics (docs/protocol.md §6) on synthetic logs with hand-computed answers."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from stabgap import metrics as M

NAN = float("nan")


def make_log(curves_by_task, iters_per_context, rho=1, sizes=None, seed=0):
    """A run log in the runner's tidy schema.

    curves_by_task: list over tasks j = 1..n of the full accuracy curve of task j over the
    iterations (j-1)*I+1 .. n*I (task j only exists from context j on). Test rows are written at every
    rho-th iteration and at the last iteration of every context, for tasks j <= context. Extra columns
    (gain, entropy, lr) and train rows are there so that the code must ignore them.
    """
    n = len(curves_by_task)
    I = iters_per_context
    sizes = sizes or [100] * n
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(1, n * I + 1):
        ctx = (t - 1) // I + 1
        common = {"iteration": t, "context": ctx, "gain_out": 1.0 + 0.01 * t,
                  "entropy": 0.5, "lr": 0.01}
        rows.append({**common, "split": "train", "task": 0, "n": 128,
                     "accuracy": float(rng.uniform(0, 100)), "loss": 1.0})
        if t % rho == 0 or t % I == 0:
            for j in range(1, ctx + 1):
                a = curves_by_task[j - 1][t - 1 - (j - 1) * I]
                rows.append({**common, "split": "test", "task": j, "n": sizes[j - 1],
                             "accuracy": float(a), "loss": (100.0 - a) / 50.0})
    return pd.DataFrame(rows)


# Three contexts, I = 4, rho = 1, unequal test-set sizes.
#   task 1: stage1 20 50 70 80 | stage2 40 60 80 90 | stage3 54 90 95 96
#   task 2:                    | stage2 10 30 50 60 | stage3 35 50 70 80
#   task 3:                                         | stage3  5 20 40 50
THREE = [
    [20, 50, 70, 80, 40, 60, 80, 90, 54, 90, 95, 96],
    [10, 30, 50, 60, 35, 50, 70, 80],
    [5, 20, 40, 50],
]
THREE_SIZES = [100, 300, 200]


@pytest.fixture
def three():
    return M.test_curves(make_log(THREE, 4, sizes=THREE_SIZES))


def test_curves_shape_and_nan(three):
    assert three.iters.tolist() == list(range(1, 13))
    assert three.contexts.tolist() == [1] * 4 + [2] * 4 + [3] * 4
    assert three.sizes.tolist() == THREE_SIZES
    assert three.acc.shape == (12, 3)
    assert np.isnan(three.acc[:4, 1:]).all() and np.isnan(three.acc[:8, 2]).all()
    assert three.acc[:, 0].tolist() == THREE[0]
    assert three.loss[0, 0] == pytest.approx((100 - 20) / 50)


def test_task1_three_contexts(three):
    m = M.task1_metrics(three)
    assert m["final"] == [80, 90, 96]
    assert m["min"] == [20, 40, 54]
    assert m["avg_acc"] == pytest.approx(266 / 3)
    assert m["avg_min_acc"] == pytest.approx(30)           # mean(min_1, min_2): stage 1 in, last out
    assert m["wc_acc"] == pytest.approx(96 / 3 + 2 / 3 * 30)  # 52
    assert m["sg"] == pytest.approx([40 / 80, 36 / 90])
    assert m["avg_sg"] == pytest.approx((0.5 + 0.4) / 2)
    assert m["depth"] == pytest.approx([40, 36])
    assert m["recover"] == [3, 2]                          # t=7 reaches 80; t=10 reaches 90


def test_seen_three_contexts_pooled_by_size(three):
    m = M.seen_metrics(three)
    # A_{<3} = 0.25 a1 + 0.75 a2 (sizes 100, 300); at t=8: 22.5 + 45 = 67.5; min in stage 3 at
    # t=9: 13.5 + 26.25 = 39.75; t=10: 60, t=11: 76.25 >= 67.5 -> recover 3.
    assert m["final"] == pytest.approx([80, 67.5, (100 * 96 + 300 * 80 + 200 * 50) / 600])
    assert m["sg"] == pytest.approx([0.5, 27.75 / 67.5])
    assert m["avg_sg"] == pytest.approx((0.5 + 27.75 / 67.5) / 2)
    assert m["depth"] == pytest.approx([40, 27.75])
    assert m["recover"] == [3, 3]
    # the unweighted mean of per-task accuracies would give (75 - 44.5) / 75 instead
    assert m["sg"][1] != pytest.approx((75 - 44.5) / 75)
    # min over iterations after the task's own stage: task 1 -> 40 (not 20), task 2 -> 35 (not 10)
    assert m["min_acc"] == pytest.approx((40 + 35) / 2)
    assert m["avg_acc"] == pytest.approx((96 + 80 + 50) / 3)
    assert m["wc_acc"] == pytest.approx(50 / 3 + 2 / 3 * 37.5)


def test_two_contexts_never_recovers():
    log = make_log([[50, 70, 80, 30, 60, 79], [10, 20, 30]], 3)
    m = M.run_metrics(log)
    t1 = m["task1"]
    assert t1["final"] == [80, 79] and t1["min"] == [50, 30]
    assert t1["sg"] == pytest.approx([50 / 80]) and t1["avg_sg"] == pytest.approx(50 / 80)
    assert t1["avg_min_acc"] == pytest.approx(50)
    assert t1["wc_acc"] == pytest.approx(79 / 2 + 0.5 * 50)
    assert t1["recover"] == [None]
    seen = m["seen"]
    assert seen["recover"] == [None]
    assert seen["min_acc"] == pytest.approx(30)
    assert seen["avg_acc"] == pytest.approx((79 + 30) / 2)
    assert seen["wc_acc"] == pytest.approx(30 / 2 + 0.5 * 30)


def test_recover_searches_beyond_next_stage():
    # task 1 only regains 80 in stage 3: recover counts from the end of stage 1 (t=2) to t=6.
    log = make_log([[60, 80, 30, 50, 70, 85], [0, 0, 0, 0], [0, 0]], 2)
    m = M.task1_metrics(M.test_curves(log))
    assert m["recover"] == [4, 1]


def test_rho_greater_than_one_uses_evaluated_iterations_only():
    # I = 6, rho = 4 -> evaluated at 4, 6 (stage end), 8, 12; the dip to 5 at t=7 is never seen.
    full = [10, 20, 30, 40, 50, 60, 5, 30, 50, 55, 62, 65]
    curves = M.test_curves(make_log([full, [0] * 6], 6, rho=4))
    assert curves.iters.tolist() == [4, 6, 8, 12]
    assert curves.contexts.tolist() == [1, 1, 2, 2]
    m = M.task1_metrics(curves)
    assert m["final"] == [60, 65] and m["min"] == [40, 30]
    assert m["sg"] == pytest.approx([0.5])
    assert m["recover"] == [6]   # first evaluated iteration >= 60 after t=6 is t=12


def test_single_context():
    m = M.run_metrics(make_log([[10, 50, 70]], 3))
    assert m["task1"]["final"] == [70] and m["task1"]["min"] == [10]
    assert m["task1"]["sg"] == [] and m["task1"]["avg_sg"] is None
    assert m["task1"]["avg_min_acc"] is None and m["task1"]["wc_acc"] == pytest.approx(70)
    assert m["seen"]["sg"] == [] and m["seen"]["min_acc"] is None
    assert m["seen"]["wc_acc"] == pytest.approx(70)
    v1 = M.task1_metrics_v1([M.test_curves(make_log([[10, 50, 70]], 3))] * 2)
    assert v1["wc_acc"] == pytest.approx([70, 0]) and v1["avg_sg"] == [None, None]
    json.dumps(m, allow_nan=False)
    json.dumps(v1, allow_nan=False)


def test_zero_pre_switch_accuracy_gives_undefined_sg():
    m = M.task1_metrics(M.test_curves(make_log([[0, 0, 0, 10], [0, 0]], 2)))
    assert m["sg"] == [None] and m["avg_sg"] is None
    assert m["depth"] == [0]


# Two seeds, two contexts, I = 3.  Mean curve 50 60 85 | 45 62.5 80; population std 10 10 5 | 5 7.5 10.
SEED_A = [[40, 70, 80, 50, 55, 90], [0, 0, 0]]
SEED_B = [[60, 50, 90, 40, 70, 70], [0, 0, 0]]


def flat(pairs):
    return [x for pair in pairs for x in pair]


def test_task1_metrics_v1_against_hand_computation():
    v1 = M.task1_metrics_v1([M.test_curves(make_log(s, 3)) for s in (SEED_A, SEED_B)])
    assert flat(v1["final"]) == pytest.approx([85, 5, 80, 10])
    assert flat(v1["min"]) == pytest.approx([50, 10, 45, 5])       # argmin of the mean curve
    assert v1["avg_acc"] == pytest.approx([82.5, math.sqrt(25 + 100) / 2])
    assert v1["avg_min_acc"] == pytest.approx([50, 10])
    assert v1["wc_acc"] == pytest.approx([65, math.sqrt((10 / 2) ** 2 + (0.5 * 10) ** 2)])
    sg_sigma = math.sqrt((25 + 25) / 85**2 + 40**2 * 25 / 85**4)
    assert flat(v1["sg"]) == pytest.approx([40 / 85, sg_sigma])
    assert v1["avg_sg"] == pytest.approx([40 / 85, sg_sigma])
    json.dumps(v1, allow_nan=False)


def test_per_seed_aggregation_differs_from_v1():
    runs = [M.run_metrics(make_log(s, 3)) for s in (SEED_A, SEED_B)]
    # per seed: A final 80,90 min 40,50 sg 30/80; B final 90,70 min 50,40 sg 50/90
    assert runs[0]["task1"]["sg"] == pytest.approx([0.375])
    assert runs[1]["task1"]["sg"] == pytest.approx([50 / 90])
    agg = M.mean_std_over_seeds(runs)
    t1 = agg["task1"]
    assert t1["avg_min_acc"] == pytest.approx({"mean": 45, "std": 5, "n": 2})   # v1 gives 50
    assert t1["wc_acc"]["mean"] == pytest.approx((65 + 60) / 2)               # v1 gives 65
    assert t1["sg"][0]["mean"] == pytest.approx((0.375 + 50 / 90) / 2)         # v1 gives 40/85
    assert t1["sg"][0]["mean"] != pytest.approx(40 / 85)
    assert t1["sg"][0]["std"] == pytest.approx(abs(50 / 90 - 0.375) / 2)
    assert t1["final"][1] == pytest.approx({"mean": 80, "std": 10, "n": 2})
    # seed A regains 80 at t=6 (3 iterations); seed B never regains 90
    assert t1["recover"] == [{"mean": 3, "std": 0, "n": 1}]
    sample = M.mean_std_over_seeds(runs, ddof=1)
    assert sample["task1"]["avg_min_acc"]["std"] == pytest.approx(math.sqrt(50))
    assert sample["task1"]["recover"][0]["std"] is None   # one value, ddof 1: undefined
    assert set(agg["seen"]) == set(runs[0]["seen"])
    json.dumps(agg, allow_nan=False)


def test_v1_requires_identical_iterations():
    a = M.test_curves(make_log(SEED_A, 3))
    b = M.test_curves(make_log(SEED_B, 3, rho=2))
    with pytest.raises(ValueError):
        M.task1_metrics_v1([a, b])


def test_run_metrics_is_plain_json():
    m = M.run_metrics(make_log(THREE, 4, sizes=THREE_SIZES))
    text = json.dumps(m, allow_nan=False)
    assert json.loads(text) == m
    for family in m.values():
        for value in family.values():
            for v in value if isinstance(value, list) else [value]:
                assert v is None or type(v) in (int, float)


def test_duplicate_test_rows_rejected():
    log = make_log(THREE, 4, sizes=THREE_SIZES)
    with pytest.raises(ValueError):
        M.test_curves(pd.concat([log, log[log["split"] == "test"].head(1)]))


def test_min_gap_says_when_a_minimum_may_lie_between_evaluations():
    # every iteration evaluated: each minimum is exact
    every = M.run_metrics(make_log(THREE, 4, sizes=THREE_SIZES))
    assert every["task1"]["min_gap"] == [1, 1, 1] and every["seen"]["min_gap"] == [1, 1]
    # I = 6, rho = 4: evaluated at 4, 6, 8, 12; stage 1's minimum (t=4) has 4 unevaluated iterations
    # before it, stage 2's (t=8) the next evaluation 4 iterations later
    full = [10, 20, 30, 40, 50, 60, 5, 30, 50, 55, 62, 65]
    m = M.run_metrics(make_log([full, [0] * 6], 6, rho=4))
    assert m["task1"]["min_gap"] == [4, 4] and m["seen"]["min_gap"] == [4]


def test_a_task1_scope_log_has_the_task1_family_only():
    log = make_log(THREE, 4, sizes=THREE_SIZES)
    task1_only = log[(log.split == "train") | (log.task == 1)]
    m = M.run_metrics(task1_only, scope="task1")
    assert m["seen"] is None and "evaluation.scope task1" in m["skipped"]["seen"]
    assert m["task1"] == M.run_metrics(log)["task1"]  # the task-1 curve is the same
    with pytest.raises(ValueError, match="tasks=1"):  # read as a seen-scope log: a clear error
        M.run_metrics(task1_only)
    json.dumps(m, allow_nan=False)
