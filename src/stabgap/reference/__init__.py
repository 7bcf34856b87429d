"""The paper's published numbers, curves and claims, as data files of the package (no torch, no
pandas: planning reads the index). What each file holds and where it comes from: curves.yaml (the
per-iteration curves), protocols.yaml (what the paper ran), claims.yaml, and the source column of
every row of the numbers' CSVs. A user's folder in the same format replaces them
(`reproduction.reference`)."""

from __future__ import annotations

from pathlib import Path

import yaml

REFERENCE_DIR = Path(__file__).resolve().parent


def folder(path: str | Path | None = None) -> Path:
    """The reference folder: the user's (a folder, or the folder of a CSV file given), else the package's."""
    if not path:
        return REFERENCE_DIR
    path = Path(path)
    return path if path.is_dir() else path.parent


def load_protocols(path: str | Path | None = None) -> dict:
    """protocols.yaml of the reference folder (the package's when the folder has none)."""
    file = folder(path) / "protocols.yaml"
    return yaml.safe_load((file if file.is_file() else REFERENCE_DIR / "protocols.yaml").read_text())


def load_claims(path: str | Path | None = None) -> list[dict]:
    return yaml.safe_load((Path(path) if path else REFERENCE_DIR / "claims.yaml").read_text())


def curves_index(path: str | Path | None = None) -> tuple[Path, list[dict]]:
    """(folder, its curves.yaml entries): the user's folder if it has a curves.yaml, else the package's."""
    where = folder(path)
    if not (where / "curves.yaml").is_file():
        where = REFERENCE_DIR
    return where, yaml.safe_load((where / "curves.yaml").read_text()) or []


def curve_benchmarks(path: str | Path | None = None) -> list[str]:
    """The benchmarks the reference curves hold (no curve file is opened)."""
    return list(dict.fromkeys(b for entry in curves_index(path)[1] for b in entry["benchmarks"]))
