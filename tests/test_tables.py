"""The text formats of the tables (pandas' Styler and to_markdown): escaping and bold cells."""

import re

import pandas as pd

from stabgap.tables import CAPTIONS, to_html, to_latex, to_markdown

NASTY = r"a_b & c #1 $x$ {y} z^2 50% ~t \cmd"


def table():
    df = pd.DataFrame({"benchmark": [NASTY, "plain"], "method": ["NGM-SGD", "m&m"], "avg-SG": ["1.00 ± 0.20", "3.00"]})
    return df, pd.DataFrame({"avg-SG": [True, False]})


def test_latex_escapes_every_special_character_of_names_and_headers():
    df, bold = table()
    tex = to_latex(df.rename(columns={"method": "me_thod #"}), bold, CAPTIONS["seen"])
    row = next(line for line in tex.splitlines() if line.startswith("a\\_b"))
    assert row.startswith(r"a\_b \& c \#1 \$x\$ \{y\} z\textasciicircum 2 50\% \textasciitilde t \textbackslash cmd")
    assert r"me\_thod \#" in tex and r"m\&m" in tex
    assert r"\textbf{1.00 $\pm$ 0.20}" in tex and r"\begin{tabular}{llr}" in tex and r"\toprule" in tex
    # unescaped specials appear only in the LaTeX markup itself (& as column separator, $ around \pm)
    body = re.sub(r"\\[a-zA-Z]+|\\[&#$%{}_]|\$\\pm\$| & ", "", tex)
    assert not set("&#%_^~") & set(body)


def test_captions_hold_no_latex_special_characters():
    for caption in CAPTIONS.values():
        assert not set("&#$%_{}~^\\") & set(caption), caption


def test_markdown_and_html_bold_the_best_cells_and_escape_html():
    df, bold = table()
    md = to_markdown(df, bold)
    assert "**1.00 ± 0.20**" in md and md.splitlines()[1].startswith("|:")
    html = to_html(df, bold, "caption <x>")
    assert "m&amp;m" in html and "<caption>caption &lt;x&gt;</caption>" in html
    assert "font-weight: bold" in html and to_html(df, bold, "c") == to_html(df, bold, "c")  # deterministic
