"""Every caption of the report renders as clean reStructuredText: no markup docutils cannot resolve
(a |...| read as a substitution, say), which the report would show as a "problematic" marker."""

from pathlib import Path

import docutils.core
import docutils.nodes
import jinja2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = sorted((REPO / "workflow" / "report").glob("*.rst"))


class Stub:
    """What a caption's template may read: snakemake.config, .wildcards."""

    def __init__(self):
        self.config = yaml.safe_load((REPO / "config.yaml").read_text())
        self.config.setdefault("reproduction", {"k": 2})
        self.wildcards = {"benchmark": "split_mnist"}


def problems(text: str) -> list[str]:
    doctree = docutils.core.publish_doctree(text, settings_overrides={"report_level": 5, "halt_level": 5})
    found = [m.astext() for m in doctree.findall(docutils.nodes.system_message)]
    found += [p.astext() for p in doctree.findall(docutils.nodes.problematic)]
    return found


@pytest.mark.parametrize("caption", CAPTIONS, ids=lambda p: p.name)
def test_caption_renders_without_problems(caption):
    text = jinja2.Template(caption.read_text()).render(snakemake=Stub())
    assert problems(text) == []


def test_the_check_finds_a_stray_substitution():
    assert problems("a row is consistent if |Δ| is small") != []
