"""Did it reproduce? The comparison rule and the claims' tests on synthetic values with known answers."""

import numpy as np
import pandas as pd
import pytest

from stabgap import claims as C
from stabgap import comparison as R
from stabgap import reference as REF

PROTOCOLS = REF.load_protocols()
V1 = PROTOCOLS["v1"]


def run(method="ngm", seed=42, **changes):
    settings = {"iters_per_context": 200, "batch_size": 128, "eta": 0.4, "test_augment": False, "eval_every": 1,
                "eval_subset": None, "eval_batch_size": 2500, "threads": 1, **changes}
    resolved = dict(V1["methods"][method])
    return {"benchmark": "split_mnist", "method": method, "seed": seed, "n_contexts": 5,
            "run": {"variant": method, **settings}, "resolved_method": resolved}


def group(values, method="ngm", family="seen", metric="avg_sg", dataset="mnist", n_test=2115, **changes):
    g = R.Group("split_mnist", method, {"builder": dataset})
    for i, v in enumerate(values):
        metrics = {family: {metric: float(v), "sg": [float(v)]}}
        g.runs.append((run(method, 42 + i, **changes), metrics, None))
    g.cache["n_test"] = n_test
    return g


def reference(value, method="ngm", metric="avg_sg", family="seen", protocol="v1"):
    return pd.DataFrame([{"version": "test", "table": "T", "family": family, "benchmark": "split_mnist", "method": method,
                          "metric": metric, "value": value, "pm": 0.001, "protocol": protocol, "source": "synthetic"}])


def row(groups, ref):
    comp = R.compare(groups, ref, PROTOCOLS, n_boot=200)
    return comp[comp.paper.notna()].iloc[0]


VALUES = [0.020, 0.024, 0.018, 0.022, 0.021]  # mean 0.021


def test_the_package_reference_loads_with_every_table():
    ref = R.load_reference()
    assert set(ref.version) == {"v1", "v2", "v3"} and set(ref.family) == {"task1_v1", "seen", "gain"}
    one = ref[(ref.benchmark == "split_mnist") & (ref.method == "msgd") & (ref.metric == "sg_1")].iloc[0]
    assert one.value == 1.0 and one.pm == 0.001 and one.protocol == "v1" and "released per-seed files" in one.source
    assert np.isnan(ref[(ref.version == "v2") & (ref.benchmark == "split_mnist") & (ref.method == "ngm")].pm.iloc[0])


def test_a_value_within_two_se_is_consistent_and_one_far_off_differs():
    g = {("split_mnist", "ngm"): group(VALUES)}
    ok = row(g, reference(0.0215))
    assert ok.verdict == "consistent" and ok.ours == pytest.approx(0.021) and ok.seeds == 5
    assert ok.se_delta == pytest.approx(np.sqrt(2) * ok.ours_se)
    far = row(g, reference(0.10))
    assert far.verdict == "differs" and far.delta == pytest.approx(0.021 - 0.10)


def test_the_se_is_floored_at_one_test_image():
    g = {("split_mnist", "ngm"): group([0.02] * 5, n_test=1000)}  # no spread at all
    r = row(g, reference(0.0205))
    assert r.ours_se == pytest.approx(1 / 1000) and r.verdict == "consistent"
    acc = {("split_mnist", "ngm"): group([90.0] * 5, metric="avg_acc", n_test=1000)}
    assert row(acc, reference(95.0, metric="avg_acc")).ours_se == pytest.approx(100 / 1000)


def test_other_data_or_settings_or_fewer_seeds_are_not_comparable_with_the_reason():
    for g, reason in ((group(VALUES, dataset="mnist5k"), "dataset mnist5k, the paper's mnist"),
                      (group(VALUES, iters_per_context=100), "iters_per_context 100, the paper's 200"),
                      (group(VALUES, test_augment=True), "test_augment True"),
                      (group(VALUES[:3]), "3 seeds, the paper's 5")):
        r = row({("split_mnist", "ngm"): g}, reference(0.0215))
        # the verdict on our runs stands beside it; comparable names what is not the paper's protocol
        assert r.verdict == "consistent" and r.comparable.startswith("not the paper's protocol: ") and reason in r.comparable
    lookalike = R.Group("split_mnist", "ngm", {"builder": "mnist", "check_md5": False}, runs=group(VALUES).runs)
    lookalike.cache["n_test"] = 2115
    assert "md5 checks off" in row({("split_mnist", "ngm"): lookalike}, reference(0.0215)).comparable
    changed = group(VALUES)
    changed.runs[0][0]["resolved_method"]["gamma"] = 0.5
    assert "ngm.gamma 0.5, the paper's 0.9" in row({("split_mnist", "ngm"): changed}, reference(0.0215)).comparable


def test_accepted_deviations_leave_a_row_comparable():
    # another evaluation batch size and thread count, multi-run batching: memory and speed only
    g = group(VALUES, eval_batch_size=500, threads=4, batch_runs=5)
    r = row({("split_mnist", "ngm"): g}, reference(0.0215))
    assert r.verdict == "consistent" and r.comparable == "yes"


def test_rows_without_runs_or_without_a_paper_value():
    comp = R.compare({("split_mnist", "ngm"): group(VALUES)}, reference(0.02, method="msgd"), PROTOCOLS, n_boot=50)
    assert comp[comp.method == "msgd"].verdict.tolist() == ["not run"]
    assert set(comp[comp.method == "ngm"].verdict) == {"not in the paper", "not in ours"}


def test_the_v1_bootstrap_computes_each_draw_of_seeds_once_and_gives_the_same_se(monkeypatch):
    from stabgap import metrics as M

    rng = np.random.default_rng(5)
    iters = np.arange(1, 41)
    contexts = (iters - 1) // 20 + 1

    def curves():
        acc = np.column_stack([90 - 30 * (contexts == 2) * np.exp(-(iters - 21) / 5.0) + rng.normal(0, 2, 40)])
        return M.Curves(iters=iters, contexts=contexts, acc=acc, loss=acc / 100, sizes=np.array([100]))

    g = group([0.1, 0.2, 0.3])
    g.cache["curves"] = [curves() for _ in range(3)]
    calls = []
    real = M.task1_metrics_v1
    monkeypatch.setattr(M, "task1_metrics_v1", lambda cl: calls.append(1) or real(cl))
    se = [R.bootstrap_se(g, "task1_v1", m, 300, 0) for m in ("avg_acc", "sg_1", "avg_min_acc")]
    assert len(calls) <= 3 ** 3  # every ordered draw of 3 seeds at most once, shared by the metrics
    uncached = []
    for m in ("avg_acc", "sg_1", "avg_min_acc"):
        draws = np.random.default_rng(0).integers(0, 3, (300, 3))
        vals = np.array([real([g.cache["curves"][i] for i in d])[m if m != "sg_1" else "sg"] for d in draws], dtype=object)
        vals = np.array([v[0][0] if m == "sg_1" else v[0] for v in vals], dtype=float)
        uncached.append(float(vals[np.isfinite(vals)].std(ddof=1)))
    assert se == uncached and all(s > 0 for s in se)


# ---------------------------------------------------------------- claims

def claim(kind="superiority", **extra):
    base = {"id": "t", "text": "synthetic", "kind": kind, "family": "seen", "metric": "avg_sg", "better": "lower",
            "method": "ngm", "versus": ["msgd"], "benchmarks": ["split_mnist"]}
    return {**base, **extra}


def evaluate(c, a, b, metric="avg_sg"):
    groups = {("split_mnist", "ngm"): group(a, metric=metric), ("split_mnist", "msgd"): group(b, "msgd", metric=metric)}
    rows, summary = C.evaluate_claims([c], groups, PROTOCOLS, n_boot=200)
    return rows.iloc[0], summary.iloc[0]


def test_superiority_holds_fails_or_is_too_noisy_to_tell():
    low, high = [0.02, 0.021, 0.019, 0.022, 0.018], [0.27, 0.26, 0.28, 0.25, 0.27]
    r, s = evaluate(claim(), low, high)
    assert r.verdict == "holds" and r.p_welch < 0.05 and r.p_mwu < 0.05 and r.ci_high < 0 and s.summary == "holds on 1 of 1"
    assert evaluate(claim(), high, low)[0].verdict == "does not hold"
    noisy_a, noisy_b = [0.1, 0.3, 0.05, 0.4, 0.2], [0.2, 0.1, 0.35, 0.15, 0.3]
    assert evaluate(claim(), noisy_a, noisy_b)[0].verdict == "inconclusive"


def test_non_inferiority_against_a_margin():
    c = claim("noninferiority", metric="avg_acc", better="higher", margin=1.0)
    same = [94.0, 94.2, 93.9, 94.1, 94.0]
    assert evaluate(c, same, [94.1, 94.0, 94.2, 93.9, 94.1], "avg_acc")[0].verdict == "holds"
    assert evaluate(c, [90.0, 90.2, 89.9, 90.1, 90.0], same, "avg_acc")[0].verdict == "does not hold"
    wide = [90.0, 98.0, 92.0, 97.0, 94.0]  # mean 94.2, but too spread to exclude a 1-point loss
    assert evaluate(c, wide, same, "avg_acc")[0].verdict == "inconclusive"


def test_gain_slopes_positive_or_flat():
    def gains(slopes):
        g = R.Group("split_mnist", "ngm", {"builder": "mnist"})
        for i, s in enumerate(slopes):
            g.runs.append((run("ngm", 42 + i), {}, None))
        stages = np.arange(1, 6)
        rng = np.random.default_rng(0)
        per_seed = np.array([1.5 + s * stages + rng.normal(0, 0.01, 5) for s in slopes])
        for k in stages:
            g.cache[("gain", f"gain_{k}")] = per_seed[:, k - 1]
        return {("split_mnist", "ngm"): g}

    up = claim("slope", family="gain", metric="gain", slope="positive", versus=None)
    assert C.evaluate_claims([up], gains([0.15, 0.12, 0.14, 0.16, 0.13]), PROTOCOLS)[0].verdict.iloc[0] == "holds"
    assert C.evaluate_claims([up], gains([-0.1, -0.12, -0.09, -0.11, -0.1]), PROTOCOLS)[0].verdict.iloc[0] == "does not hold"
    flat = claim("slope", family="gain", metric="gain", slope="flat", margin=0.05, versus=None)
    assert C.evaluate_claims([flat], gains([0.0, 0.01, -0.01, 0.0, 0.005]), PROTOCOLS)[0].verdict.iloc[0] == "holds"
    assert C.evaluate_claims([flat], gains([0.2, 0.21, 0.19, 0.2, 0.22]), PROTOCOLS)[0].verdict.iloc[0] == "does not hold"


def test_a_rising_gain_can_hold_with_4_seeds_where_wilcoxon_cannot_reach_alpha():
    slopes = np.array([0.15, 0.12, 0.14, 0.16])
    four = C.test_slope(slopes, "positive", 0.0, 0.05, 200, 0)
    assert four["p_mwu"] == 1 / 16 and four["verdict"] == "holds" and "cannot reach" in four["tests"]
    five = C.test_slope(np.append(slopes, 0.13), "positive", 0.0, 0.05, 200, 0)
    assert five["verdict"] == "holds" and five["tests"] == "t-test, Wilcoxon"
    spread = C.test_slope(np.array([0.3, -0.2, 0.25, -0.1]), "positive", 0.0, 0.05, 200, 0)
    assert spread["verdict"] == "inconclusive"  # the t-test still decides: a spread mean is not a rise


def test_a_claim_can_hold_with_3_seeds_where_mann_whitney_cannot_reach_alpha():
    assert not C.mwu_can_reach(3, 3, 0.05) and C.mwu_can_reach(4, 4, 0.05) and C.mwu_can_reach(3, 4, 0.05)
    low, high = [0.02, 0.021, 0.019], [0.27, 0.26, 0.28]
    three = C.test_superiority(np.array(low), np.array(high), "lower", 0.05, 200, 0)
    assert three["p_mwu"] == 0.05 and three["verdict"] == "holds" and "cannot reach" in three["tests"]
    four = C.test_superiority(np.array(low + [0.022]), np.array(high + [0.25]), "lower", 0.05, 200, 0)
    assert four["verdict"] == "holds" and four["tests"] == "Welch, Mann-Whitney U"
    noisy = C.test_superiority(np.array([0.1, 0.3, 0.05]), np.array([0.2, 0.1, 0.35]), "lower", 0.05, 200, 0)
    assert noisy["verdict"] == "inconclusive"  # Welch alone still decides: overlapping seeds do not hold


def test_the_3_seed_rule_keeps_its_error_rate_and_has_power():
    # simulated (README, *Did it reproduce?*): no true difference seldom reads "holds", 3 sd mostly does
    assert C.rule_rates(3, 0.0, "normal", reps=600, seed=1) < 0.08
    assert C.rule_rates(3, 0.0, "unequal", reps=600, seed=2) < 0.08
    assert C.rule_rates(3, 3.0, "normal", reps=300, seed=3) > 0.7


def test_a_claim_over_several_benchmarks_is_summarised_and_other_data_is_not_comparable():
    c = claim(benchmarks=["split_mnist", "split_cifar10"], versus=["msgd"])
    groups = {("split_mnist", "ngm"): group([0.02, 0.021, 0.019, 0.022, 0.018]),
              ("split_mnist", "msgd"): group([0.27, 0.26, 0.28, 0.25, 0.27], "msgd")}
    rows, summary = C.evaluate_claims([c], groups, PROTOCOLS, n_boot=100)
    assert rows.verdict.tolist() == ["holds", "not run"] and summary.summary.iloc[0] == "holds on 1 of 1; 1 not run"
    other = {k: group(v, k[1], dataset="mnist5k") for k, v in
             ((("split_mnist", "ngm"), [0.02, 0.021, 0.019, 0.022, 0.018]), (("split_mnist", "msgd"), [0.27] * 5))}
    rows, summary = C.evaluate_claims([claim()], other, PROTOCOLS, n_boot=100)
    r = rows.iloc[0]
    assert r.verdict == "holds" and r.comparable.startswith("not the paper's protocol: dataset mnist5k")
    assert summary.summary.iloc[0] == "holds on 1 of 1; not the paper's protocol on 1 of 1"


def test_the_paper_claims_are_declared_for_every_kind():
    claims = REF.load_claims()
    assert {c["kind"] for c in claims} == {"superiority", "noninferiority", "slope"}
    assert all(c.get("margin") is not None for c in claims if c["kind"] == "noninferiority")


def test_a_users_own_reference_folder_replaces_the_papers(tmp_path):
    reference(0.0215).to_csv(tmp_path / "mine.csv", index=False)
    ref = R.load_reference(tmp_path)
    assert len(ref) == 1 and ref.source.iloc[0] == "synthetic"
    assert REF.load_protocols(tmp_path) == PROTOCOLS  # no protocols.yaml of its own: the paper's
    assert row({("split_mnist", "ngm"): group(VALUES)}, ref).verdict == "consistent"
    (tmp_path / "bad.csv").write_text("benchmark,value\nsplit_mnist,1\n")
    with pytest.raises(ValueError, match="lacks the column"):
        R.load_reference(tmp_path)


def test_runs_evaluated_on_task1_only_skip_the_seen_family_and_say_why():
    from stabgap.metrics import SEEN_SKIPPED

    ngm = group(VALUES)
    msgd = R.Group("split_mnist", "msgd", {"builder": "mnist"})
    for i in range(5):
        metrics = {"task1": {"avg_sg": 0.3, "sg": [0.3]}, "seen": None, "skipped": {"seen": SEEN_SKIPPED}}
        msgd.runs.append((run("msgd", 42 + i, eval_scope="task1"), metrics, None))
    msgd.cache["n_test"] = 2115
    groups = {("split_mnist", "ngm"): ngm, ("split_mnist", "msgd"): msgd}
    claim = {"id": "x", "text": "lower seen avg-SG", "kind": "superiority", "family": "seen", "metric": "avg_sg",
             "method": "ngm", "versus": ["msgd"], "better": "lower", "benchmarks": ["split_mnist"]}
    rows, summary = C.evaluate_claims([claim], groups, PROTOCOLS, n_boot=50)
    assert rows.verdict.tolist() == ["not run"] and "5 of 5 runs: evaluation.scope task1" in rows.note.iloc[0]
    comp = R.compare(groups, reference(0.3, method="msgd"), PROTOCOLS, n_boot=50)
    r = comp[comp.paper.notna()].iloc[0]
    assert r.verdict == "not in ours" and "evaluation.scope task1" in r.note
    t1 = R.compare(groups, reference(0.3, method="msgd", family="task1"), PROTOCOLS, n_boot=50)  # task 1: there
    assert t1.ours.iloc[0] == pytest.approx(0.3)


# ---------------------------------------------------------------- a claim's families in order of preference

def scoped(values, method, scope):
    """A group whose runs were evaluated under evaluation.scope `scope`: task1 runs have no seen family."""
    from stabgap.metrics import SEEN_SKIPPED

    g = R.Group("split_mnist", method, {"builder": "mnist"})
    for i, v in enumerate(values):
        task1 = {"avg_sg": float(v), "sg": [float(v)], "avg_acc": 90.0 + float(v)}
        seen = {"avg_sg": float(v) + 0.5, "sg": [float(v) + 0.5], "avg_acc": 80.0}  # another family: other values
        metrics = ({"task1": task1, "seen": None, "skipped": {"seen": SEEN_SKIPPED}} if scope == "task1"
                   else {"task1": task1, "seen": seen})
        g.runs.append((run(method, 42 + i, eval_scope=scope), metrics, None))
    g.cache["n_test"] = 2115
    return g


LOW, HIGH = [0.02, 0.021, 0.019], [0.27, 0.26, 0.28]
PREFER = {"id": "p", "text": "lower avg-SG", "kind": "superiority", "family": ["seen", "task1"], "metric": "avg_sg",
          "method": "ngm", "versus": ["msgd"], "better": "lower", "benchmarks": ["split_mnist"]}


def test_a_claim_uses_its_first_family_that_every_group_has():
    # every run has both families: the first, seen, is used (its values are the task-1 ones + 0.5)
    both = {("split_mnist", "ngm"): scoped(LOW, "ngm", "seen"), ("split_mnist", "msgd"): scoped(HIGH, "msgd", "seen")}
    rows, _ = C.evaluate_claims([PREFER], both, PROTOCOLS, n_boot=50)
    r = rows.iloc[0]
    assert r.family == "seen" and r.verdict == "holds" and r["diff"] == pytest.approx(0.02 - 0.27) and r.note == ""
    # task-1-scoped runs on both sides: task1, and the row says why seen was passed over
    t1 = {("split_mnist", "ngm"): scoped(LOW, "ngm", "task1"), ("split_mnist", "msgd"): scoped(HIGH, "msgd", "task1")}
    rows, _ = C.evaluate_claims([PREFER], t1, PROTOCOLS, n_boot=50)
    r = rows.iloc[0]
    assert r.family == "task1" and r.verdict == "holds" and r["diff"] == pytest.approx(0.02 - 0.27)
    assert "no seen metrics in some runs (ngm: 3 of 3 runs" in r.note and r.note.endswith("so judged on task1")


def test_groups_that_mix_scopes_are_judged_on_the_family_they_share_for_both_sides():
    """NGM-SGD evaluated on every seen task, MSGD on task 1 only: both sides use task1 (the seen runs
    have it too), never seen on one side and task1 on the other."""
    mixed = {("split_mnist", "ngm"): scoped(LOW, "ngm", "seen"), ("split_mnist", "msgd"): scoped(HIGH, "msgd", "task1")}
    rows, _ = C.evaluate_claims([PREFER], mixed, PROTOCOLS, n_boot=50)
    r = rows.iloc[0]
    assert r.family == "task1" and r["diff"] == pytest.approx(0.02 - 0.27)  # task-1 values on both sides
    assert "msgd: 3 of 3 runs" in r.note and "ngm:" not in r.note
    # a single family (the old form, still valid) that one side lacks: not run, as before
    single = dict(PREFER, family="seen")
    rows, _ = C.evaluate_claims([single], mixed, PROTOCOLS, n_boot=50)
    assert rows.verdict.tolist() == ["not run"] and rows.family.iloc[0] == "seen"
    # no family of the list is had by all: not run, naming each
    none = dict(PREFER, family=["seen"])
    rows, _ = C.evaluate_claims([none], mixed, PROTOCOLS, n_boot=50)
    assert rows.verdict.iloc[0] == "not run" and "no seen metrics" in rows.note.iloc[0]


def test_a_gain_slope_on_two_contexts_is_reported_and_says_so():
    g = R.Group("split_mnist", "ngm", {"builder": "mnist"})
    for i, (g1, g2) in enumerate([(1.5, 1.9), (1.4, 1.95), (1.6, 2.0), (1.5, 1.85)]):
        g.runs.append((dict(run("ngm", 42 + i), n_contexts=2), {}, None))
        g.cache.setdefault(("gain", "gain_1"), []).append(g1)
        g.cache.setdefault(("gain", "gain_2"), []).append(g2)
    g.cache[("gain", "gain_1")], g.cache[("gain", "gain_2")] = (np.array(g.cache[("gain", k)]) for k in ("gain_1", "gain_2"))
    claim = {"id": "4a", "text": "rises", "kind": "slope", "family": "gain", "metric": "gain", "method": "ngm",
             "slope": "positive", "benchmarks": ["split_mnist"]}
    rows, _ = C.evaluate_claims([claim], {("split_mnist", "ngm"): g}, PROTOCOLS, n_boot=50)
    r = rows.iloc[0]
    assert r.verdict == "holds" and r["diff"] == pytest.approx(np.mean([0.4, 0.55, 0.4, 0.35]))  # g2 - g1 per seed
    assert "rests on 2 contexts: a slope through two points" in r.note and r.family == "gain"


def test_look_alike_data_is_named_in_the_comparable_column():
    """A dataset entry's `lookalike` (its files are not the originals: a JPEG re-encoding) is named
    beside every verdict on it, whatever its builder's own checks say."""
    g = group(VALUES)
    g.dataset = {"builder": "mnist", "lookalike": "JPEG re-encodings of the original images"}
    r = row({("split_mnist", "ngm"): g}, reference(0.0215))
    assert r.comparable == ("not the paper's protocol: look-alike data, not the original files: "
                            "JPEG re-encodings of the original images")
    assert R.comparability(group(VALUES), V1) == []  # the same runs on the originals: comparable


def test_lookalike_is_a_dataset_key_for_every_builder_and_no_builder_option():
    from stabgap.config import ConfigError, check_config, dataset_options, validate_schema

    cfg = {"results": "results", "datasets": {"mnist5k": {"builder": "mnist5k", "lookalike": "a test"}},
           "benchmarks": {"split_mnist": {"dataset": "mnist5k", "iters_per_context": 2, "batch_size": 4, "eta": 0.1}},
           "methods": {"sgd": {}}, "seeds": [1]}
    validate_schema(cfg)
    check_config(cfg)  # accepted for a builder whose signature has no such option
    assert "lookalike" not in dataset_options(cfg["datasets"]["mnist5k"])
    assert "builder" not in dataset_options(cfg["datasets"]["mnist5k"])
    cfg["datasets"]["mnist5k"]["lookalike"] = ""
    with pytest.raises(ConfigError, match="lookalike"):
        validate_schema(cfg)
