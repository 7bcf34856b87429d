"""The speed harness (src/stabgap/speed/harness.py) and its best-rate search, on tiny settings: the
docs' harness commands run without the search (tests/test_docs.py), which is checked here."""

import torch

from stabgap.archs import get_arch
from stabgap.speed.harness import best_rates, main


def test_the_best_rate_search_tries_every_layout_and_batch_and_keeps_the_fastest():
    torch.set_num_threads(1)
    for net, image, layouts in (("mlp", (1, 28, 28), {"nchw"}), ("resnet18_slim", (3, 32, 32), {"nchw", "channels_last"})):
        best = best_rates(get_arch(net), image, 10, "cpu", seconds=0.01, train_batches=(8, 16), eval_batches=(8, 16))
        tried = best["all"]
        assert {(part, layout, batch) for part, layout, batch, _ in tried} == {
            (part, layout, batch) for part in ("train", "eval") for layout in layouts for batch in (8, 16)}
        for part in ("train", "eval"):
            rate, layout, batch = best[part]
            assert rate > 0 and rate == max(r for p, _, _, r in tried if p == part)


def test_the_harness_prints_one_row_for_a_slice(capsys, tmp_path):
    import yaml

    cfg = {"results": str(tmp_path), "datasets": {"mnist5k": {"builder": "mnist5k", "test_per_class": 10}},
           "benchmarks": {"split_mnist": {"dataset": "mnist5k", "iters_per_context": 5, "batch_size": 8, "eta": 0.4}},
           "methods": {"ngm": {}}, "seeds": [1]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    main(["--config", str(tmp_path / "c.yaml"), "--benchmark", "split_mnist", "--iters", "3", "--threads", "1",
          "--no-reference", "--header"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| benchmark | data |") and out[2].startswith("| split_mnist | real | ngm | seen |")
    assert "| ctx 1, 3 it |" in out[2]
