"""The 1-D toy model of figure 1 (docs/protocol.md §7.1)."""

import numpy as np

from stabgap.toy import deterministic_models, noisy_gain_runs, step_target


def test_target_flip():
    t = step_target()
    assert t.shape == (300,) and (t[144:154] == -1).all() and t[143] == 1 and t[154] == 1 and (t == -1).sum() == 10


def test_gain_rises_after_the_flip_and_relaxes_back_to_g0():
    d = deterministic_models(step_target())
    g = d["gain_value"]
    assert np.allclose(g[100:145], 1.0, atol=1e-6)  # settled at g0 before the flip
    assert g[145:150].max() > 2.0  # a transient gain after the flip
    assert abs(g[-1] - 1.0) < 0.1 and g[-1] < g[160]  # relaxing back to g0
    # the gain-modulated learner follows the flip faster than the slow weight
    assert d["gain"][150] < d["slow"][150] - 0.5
    assert d["slow"][0] == 0.0 and d["gain"][0] == 1.0  # outputs recorded before each update


def test_noisy_runs_fast_plus_slow_is_effective_and_gain_transient():
    r = noisy_gain_runs(n_runs=50, seed=0)
    assert r["gain"].shape == (50, 100)
    assert np.allclose(r["slow"] + r["fast"], r["effective"], atol=1e-12)
    m = r["gain"].mean(0)
    assert abs(m[:40].mean() - 1.0) < 0.05  # near g0 while the target (0) is learned
    peak = m[44:70].max()
    assert peak > 1.3 and m[90:].mean() < peak - 0.2
    assert np.array_equal(noisy_gain_runs(n_runs=3, seed=1)["gain"], noisy_gain_runs(n_runs=3, seed=1)["gain"])
    assert not np.array_equal(noisy_gain_runs(n_runs=3, seed=1)["gain"], noisy_gain_runs(n_runs=3, seed=2)["gain"])
