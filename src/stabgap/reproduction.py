"""Did it reproduce? The stage that answers it (no torch): our numbers beside the paper's
(comparison.py), the paper's claims tested on our runs (claims.py), our curves beside the paper's
per-iteration curves (curves.py), and their figures (figures.py).

Writes into its folder: comparison, claims and curves as CSV, Markdown, LaTeX and HTML;
curve_stages.csv (per stage: final values and minima of both curves); figure.{pdf,png} (the numbers)
and curves_<benchmark>.{pdf,png} (the curves) for each benchmark asked for.
"""

from __future__ import annotations

from pathlib import Path

from .claims import CLAIMS_CAPTION, claims_display, evaluate_claims
from .comparison import COMPARISON_CAPTION, compare, comparison_display, load_groups, load_reference
from .curves import CURVES_CAPTION, compare_curves, curves_display, load_curves, load_seed_curves
from .fileio import atomic_write_text
from .reference import load_claims, load_protocols


def write_reproduction(run_dirs, out_dir, datasets: dict, reference=None, claims=None, n_boot: int = 1000,
                       k: float = 2.0, alpha: float = 0.05, seed: int = 0, curve_benchmarks=()) -> list[Path]:
    from . import figures
    from .tables import to_html, to_latex, to_markdown

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = load_groups(run_dirs, datasets)
    ref, protocols = load_reference(reference), load_protocols(reference)
    comp = compare(groups, ref, protocols, n_boot=n_boot, k=k, seed=seed)
    rows, summary = evaluate_claims(load_claims(claims), groups, protocols, alpha=alpha, n_boot=n_boot, seed=seed)
    paper_curves = load_curves(reference)
    curve_rows, stage_rows = compare_curves(groups, paper_curves, protocols, load_seed_curves(reference))
    written = []
    for name, long, wide, caption in (("comparison", comp, comparison_display(comp), COMPARISON_CAPTION),
                                      ("claims", rows, claims_display(rows, summary), CLAIMS_CAPTION),
                                      ("curves", curve_rows, curves_display(curve_rows), CURVES_CAPTION)):
        stem = out_dir / name
        atomic_write_text(f"{stem}.csv", long.to_csv(index=False))
        atomic_write_text(f"{stem}.md", to_markdown(wide))
        atomic_write_text(f"{stem}.tex", to_latex(wide, caption=caption))
        atomic_write_text(f"{stem}.html", to_html(wide, caption=caption))
        written += [Path(f"{stem}.{ext}") for ext in ("csv", "md", "tex", "html")]
    atomic_write_text(out_dir / "curve_stages.csv", stage_rows.to_csv(index=False))
    written.append(out_dir / "curve_stages.csv")
    written += figures.plot_comparison(comp, out_dir / "figure")
    for bench in curve_benchmarks:
        written += figures.plot_curves_vs_paper(groups, paper_curves, curve_rows, bench, out_dir / f"curves_{bench}")
    return written
