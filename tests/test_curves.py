"""Curves against the paper's (curves.py): the rule on synthetic curves with known answers."""

import numpy as np
import pandas as pd
import pytest

from stabgap import curves as CV

I, N_CONTEXTS = 50, 3  # a paper run: 3 contexts of 50 iterations


def paper_curve(seed=0):
    """A stability-gap-shaped mean curve with a per-iteration std, as the paper's file holds it."""
    t = np.arange(1, I * N_CONTEXTS + 1)
    offset = (t - 1) % I
    mean = 90 - 40 * np.exp(-offset / 3.0) * (t > I)  # a dip of 40 points right after each switch
    mean = np.where(t <= 5, 20 + 14 * t, mean)  # stage 1 learns from 20 %
    std = np.where(offset < 10, 4.0, 1.0)
    return pd.DataFrame({"iteration": t, "mean": mean, "std": std, "n_seeds": 5})


def ours_from(paper, n=5, shift=0.0, seed=1, every=1, dense=0, contexts=N_CONTEXTS):
    """Our seed mean if our n seeds were draws of the paper's process, plus a shift; evaluated every
    `every` iterations (and every one of the first `dense` of a context), over `contexts` contexts."""
    rng = np.random.default_rng(seed)
    t = paper.iteration.to_numpy()
    seeds = paper["mean"].to_numpy() + shift + rng.standard_normal((n, len(t))) * paper["std"].to_numpy()
    keep = ((t % every == 0) | (t % I == 0) | ((t - 1) % I < dense)) & (t <= contexts * I)
    return pd.DataFrame({"iteration": t[keep], "mean": seeds.mean(0)[keep], "std": seeds.std(0)[keep], "n_seeds": n})


def test_a_faithful_replicate_tracks_the_paper():
    paper = paper_curve()
    for seed in range(5):
        r = CV.compare_curve(ours_from(paper, seed=seed), paper, I, N_CONTEXTS)
        assert r["verdict"] == "tracks the paper", r["why"]
        assert r["share_2sd"] >= r["threshold"] and r["share_1sd"] < r["share_2sd"]
        assert r["covered"] == f"contexts 1-3 of 3: {I * N_CONTEXTS} of {I * N_CONTEXTS} iterations"


def test_a_shifted_curve_departs_by_its_band_share():
    paper = paper_curve()
    r = CV.compare_curve(ours_from(paper, shift=6.0), paper, I, N_CONTEXTS)
    assert r["verdict"] == "departs" and "band share" in r["why"] and r["share_2sd"] < 0.5


def test_a_deeper_gap_departs_though_the_band_share_is_high():
    paper = paper_curve()
    ours = ours_from(paper, seed=2)
    dip = ours.iteration.between(I + 1, I + 4)  # four iterations after the first switch, 25 points lower
    ours.loc[dip, "mean"] -= 25.0
    r = CV.compare_curve(ours, paper, I, N_CONTEXTS)
    assert r["share_2sd"] >= r["threshold"]  # the band share alone cannot see a short dip
    assert r["verdict"] == "departs" and "deeper gap after switch 1" in r["why"]
    first = r["stages"][1]
    assert first["min_ours_at"] == 1 and first["min_paper_at"] == 1 and not first["min_within"]


def test_a_slice_is_compared_over_what_it_covers_and_says_so():
    paper = paper_curve()
    ours = ours_from(paper, seed=3, every=10, dense=5, contexts=2)  # contexts 1-2, sparse with a dense window
    r = CV.compare_curve(ours, paper, I, N_CONTEXTS)
    assert r["covered"] == f"contexts 1-2 of 3: {len(ours)} of {I * N_CONTEXTS} iterations"
    assert r["iterations"] == len(ours) == 2 * (5 + 5)  # 1-5, 10, 20, ..., 50 | 51-55, 60, ..., 100
    assert [s["stage"] for s in r["stages"]] == [1, 2] and r["verdict"] == "tracks the paper", r["why"]
    # the dense window catches the minimum after the switch: evaluated next to it, spacing 1
    assert r["stages"][1]["min_gap"] == 1


def test_a_single_seed_has_its_own_threshold():
    paper = paper_curve()
    assert CV.expected_share(5) == pytest.approx(0.95, abs=0.01) and CV.expected_share(1) == pytest.approx(0.82, abs=0.01)
    assert CV.threshold(1) == pytest.approx(CV.expected_share(1) - CV.SLACK)
    tracked = sum(CV.compare_curve(ours_from(paper, n=1, seed=s), paper, I, N_CONTEXTS)["verdict"] == "tracks the paper"
                  for s in range(10))
    assert tracked >= 7  # a faithful single run mostly tracks; its verdict is noisier, as its threshold says
    assert CV.compare_curve(ours_from(paper, n=1, shift=8.0), paper, I, N_CONTEXTS)["verdict"] == "departs"


def test_the_package_holds_the_papers_v1_curves():
    curves = CV.load_curves()
    assert set(curves.benchmark) == {"split_mnist", "permuted_mnist", "rotated_mnist", "split_cifar10",
                                     "domain_cifar100_v1"}
    one = curves[(curves.benchmark == "split_cifar10") & (curves.method == "msgd") & (curves.metric == "task1_accuracy")]
    assert len(one) == 2000 and one.iteration.min() == 1 and (one.n_seeds == 5).all()
    assert set(curves.metric) >= {"task1_accuracy", "task1_loss", "gain_out"}


def test_a_users_reference_folder_may_hold_curves(tmp_path):
    paper = paper_curve().assign(benchmark="split_mnist", method="ngm", metric="task1_accuracy")
    paper.to_csv(tmp_path / "mine-curves.csv", index=False)
    (tmp_path / "curves.yaml").write_text("- {file: mine-curves.csv, protocol: v1, benchmarks: [split_mnist], "
                                          "methods: [ngm], source: synthetic, licence: none}\n")
    assert len(CV.load_curves(tmp_path)) == len(paper)
    from stabgap import comparison

    pd.DataFrame([{"version": "mine", "table": "T", "family": "seen", "benchmark": "split_mnist", "method": "ngm",
                   "metric": "avg_sg", "value": 0.02, "pm": 0.0, "protocol": "v1", "source": "mine"}]).to_csv(
        tmp_path / "numbers.csv", index=False)
    assert len(comparison.load_reference(tmp_path)) == 1  # the curve file is not read as numbers
