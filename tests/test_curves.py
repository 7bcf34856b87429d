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


# ---------------------------------------------------------------- minima, like with like

@pytest.mark.parametrize("k", [1, 3, 5])
def test_the_minima_rule_keeps_its_false_departures_near_5_percent_when_dips_jitter(k):
    """Dips that vary in depth (sd 12 points) and time (centres within 9 or 22 iterations): a
    faithful replicate's minimum departs in about 5 % of comparisons, whatever our seed count."""
    for onset in ((3.0, 12.0), (3.0, 25.0)):
        assert CV.minimum_rule_rates(k, 0.0, onset=onset, reps=600, seed=k) <= 0.09


def test_the_mean_curve_rule_it_replaces_departs_a_faithful_seed_too_often_and_the_new_one_sees_deeper_gaps():
    assert CV.minimum_rule_rates(1, 0.0, reps=600, seed=7, rule="mean curve") > 0.10  # the bias the rule removes
    assert CV.minimum_rule_rates(1, 0.0, reps=600, seed=7) < 0.08
    assert CV.minimum_rule_rates(3, 30.0, reps=400, seed=8) > 0.3  # 2.5 dip sds deeper: often seen
    assert CV.minimum_rule_rates(3, 60.0, reps=200, seed=9) > 0.8  # 5 dip sds deeper: almost always


def test_minimum_reference_is_the_mean_of_the_subset_minima_with_a_student_band():
    theirs = np.array([[90, 60, 90], [90, 90, 40], [90, 70, 90], [90, 50, 90], [90, 90, 80]], dtype=float)
    ref = CV.minimum_reference(theirs, 1)
    assert ref["centre"] == pytest.approx(np.mean([60, 40, 70, 50, 80]))  # one seed: its own minimum
    s = np.std([60, 40, 70, 50, 80], ddof=1)
    assert ref["sd"] == pytest.approx(s * np.sqrt(1 + 1 / 5)) and ref["t"] == pytest.approx(2.7764, abs=1e-4)
    five = CV.minimum_reference(theirs, 5)
    assert five["centre"] == pytest.approx(theirs.mean(axis=0).min()) and five["low"] == five["high"]
    assert CV.minimum_reference(theirs, 1, floor=100.0)["sd"] == 100.0


def test_one_of_the_authors_own_seeds_tracks_the_others_by_the_new_rule_and_departs_by_the_old():
    """A faithful replicate by construction: the authors' seed 43 of MSGD on Split CIFAR-10 (their
    released curves), held against their other four seeds. After the second switch it dips to 63.8;
    the four seeds' mean curve only to 75.6 ± 3.3 (their dips fall at different iterations), while
    their own minima lie between 54.9 and 81.1. The mean-curve rule reads "departs"; judged against
    the minima of the four seeds, it tracks."""
    seeds = CV.seed_table(CV.load_seed_curves(), "split_cifar10", "msgd", "task1_accuracy").loc[:1200]
    ours_seeds, paper_seeds = seeds[[43]], seeds.drop(columns=43)
    ours = pd.DataFrame({"iteration": seeds.index, "mean": ours_seeds[43].to_numpy(), "std": 0.0, "n_seeds": 1})
    paper = pd.DataFrame({"iteration": seeds.index, "mean": paper_seeds.mean(axis=1).to_numpy(),
                          "std": paper_seeds.std(axis=1, ddof=0).to_numpy(), "n_seeds": 4})
    old = CV.compare_curve(ours, paper, 400, 3)
    assert old["verdict"] == "departs" and "deeper gap after switch 2: minimum 63.8" in old["why"]
    new = CV.compare_curve(ours, paper, 400, 3, paper_seeds=paper_seeds)
    second = new["stages"][2]
    assert second["min_within"] and second["min_rule"] == "1-seed means of the paper's 4 seeds"
    assert second["min_ref_low"] == pytest.approx(54.9, abs=0.05) and second["min_ref_high"] == pytest.approx(72.8, abs=0.05)
    assert "switch 2" not in new["why"]
    deeper = ours_seeds - 40.0 * (ours_seeds.index.to_numpy()[:, None] > 800)  # 40 points below it after switch 2
    far = CV.compare_curve(ours.assign(mean=deeper[43].to_numpy()), paper, 400, 3, paper_seeds=paper_seeds)
    assert far["verdict"] == "departs" and "deeper gap after switch 2" in far["why"]
    assert "the minima of 1-seed means of the paper's seeds" in far["why"]


def test_the_package_ships_the_papers_curves_seed_by_seed_beside_their_means():
    seeds = CV.load_seed_curves()
    means = CV.load_curves()
    assert set(seeds.seed) == {42, 43, 44, 45, 46} and len(seeds) == 134_000
    table = CV.seed_table(seeds, "split_cifar10", "msgd", "task1_accuracy")
    paper = means[(means.benchmark == "split_cifar10") & (means.method == "msgd") & (means.metric == "task1_accuracy")]
    assert np.allclose(table.mean(axis=1).to_numpy(), paper.set_index("iteration").loc[table.index, "mean"], atol=1e-3)
    # the case of the issue: MSGD's per-seed minima after Split CIFAR-10's second switch
    window = table.loc[801:850]  # the first 50 iterations after it
    assert sorted(window.min().round(1)) == [54.9, 63.8, 72.8, 79.5, 81.1]
