"""Every command in the README and docs/ works as written.

The fenced `bash` blocks are extracted and each command is run in a copy of the checkout whose
configs/demo.yaml is the demo shrunk to a few iterations (same keys, same lines): the full
reproduction and the SLURM commands as dry runs, commands that need data the user stages as dry runs
(or, for the speed harness on MNIST, only where the full MNIST is staged), the rest for real; the
speed harness's commands skip its best-rate search (tests/test_speed.py checks it). A
command meant to exit non-zero here (the preflight check of the full config, without its data) must
exit so, saying why. A command no rule below covers fails the test: a new command in the docs must be
classified here.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Commands not run here, each with why (and where it is checked instead).
NOT_RUN = {
    "python -m pytest -q": "the test suite itself (.ci/run runs it on a clean clone)",
    "tests/chaos/chaos.py": "the long chaos run; tests/test_chaos.py runs a 5-interruption version",
    "src/stabgap/speed/gpu.sh": "needs a GPU machine (its --cpu-check rehearsal takes over 10 minutes)",
    "mkdir -p /data/stabgap/mnist": "stages the user's own files",
    "cp train-images-idx3-ubyte.gz": "stages the user's own files",
}
# Commands meant to exit non-zero here: the command run, the status and the words its output must hold,
# and why. The full config's preflight runs without its speed section (the ResNet timed on the CPU,
# minutes here; the demo's preflight before it runs that section as written).
EXPECTED_TO_FAIL = {
    "python -m stabgap doctor --config config.yaml": ("python -m stabgap doctor --config config.yaml --no-speed", 1,
                                                      "| data | miniimagenet | FAILURE |",
                                                      "no data of the full reproduction is staged here"),
}
DRY = ("workflow/profiles/", "snakemake --cores all", "STABGAP_DATA_ROOT=/data/stabgap snakemake")
# where the full MNIST is staged (as for tests/test_datasets.py), the speed harness runs on it
STAGED = os.environ.get("STABGAP_DATA_ROOT")
STAGED = STAGED if STAGED and (Path(STAGED) / "mnist").is_dir() else None


def blocks():
    """(file, script) per fenced bash block: a block with a heredoc is one script, else one per command."""
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            if "<<" in block:
                yield doc.name, block
                continue
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    yield doc.name, line


COMMANDS = list(blocks())


def tiny_demo(text: str) -> str:
    """The demo's config, the same lines, a few iterations and 2 seeds (the claims need 2)."""
    text = re.sub(r"iters_per_context: \d+", "iters_per_context: 3", text)
    text = text.replace("test_per_class: 50", "test_per_class: 10")
    text = re.sub(r"^seeds: \[.*\]$", "seeds: [42, 43]", text, flags=re.M)
    return re.sub(r"^  seeds: \[.*\]", "  seeds: [42]", text, flags=re.M)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkout")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / "configs" / "demo.yaml").write_text(tiny_demo((REPO / "configs" / "demo.yaml").read_text()))
    return root


# ---------------------------------------------------------------- the environment a section installs
# The docs' commands are run in the install their section names: the README's quick start installs
# `.[workflow]`, and every command of the README and docs/ runs there (the test suite's own command,
# which needs `.[dev]`, is not run here). This test itself runs in `.[dev]`, which holds more (pytest
# brings pygments, for one): the modules only `.[dev]` brings are hidden from the commands, so a
# command that needs one fails here as it would after the quick start's install.

def requirements(extra: str | None) -> list[str]:
    """The project's requirements with one of its extras (pyproject.toml; `stabgap[x]` expanded)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    out = list(project["dependencies"])
    for req in project.get("optional-dependencies", {}).get(extra, []) if extra else []:
        if req.startswith("stabgap["):
            out += [r for r in requirements(req[len("stabgap["):-1]) if r not in out]
        else:
            out.append(req)
    return out


def distributions(extra: str | None) -> set[str]:
    """Every distribution an install of the project with `extra` brings: its requirements and theirs."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    seen, todo = set(), [Requirement(r) for r in requirements(extra)]
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for sub in map(Requirement, dist.requires or []):
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                todo.append(sub)
    return seen


def hidden_modules(install: str, test_env: str = "dev") -> set[str]:
    """The top-level modules that the test's environment has and the install `install` would not."""
    import importlib.metadata as md

    only_here = distributions(test_env) - distributions(install)
    providers = md.packages_distributions()
    return {module for module, dists in providers.items()
            if dists and all(d.lower().replace("_", "-") in only_here for d in dists)}


SITECUSTOMIZE = """import importlib.abc, sys
HIDDEN = {hidden!r}
class _NotInThisInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the install its section names)", name=name)
sys.meta_path.insert(0, _NotInThisInstall())
"""


@pytest.fixture(scope="module")
def quick_start_install(tmp_path_factory):
    """A folder whose sitecustomize hides what the quick start's `.[workflow]` does not bring."""
    quick = re.search(r'pip install -e "\.\[(\w+)\]" && snakemake', (REPO / "README.md").read_text())
    assert quick and quick[1] == "workflow", "the quick start installs .[workflow] before it runs the demo"
    folder = tmp_path_factory.mktemp("install")
    hidden = hidden_modules(quick[1])
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(hidden=sorted(hidden)))
    return folder


def test_the_quick_start_install_brings_what_the_workflow_needs_and_the_tests_need_more():
    hidden = hidden_modules("workflow")
    assert {"pytest", "hypothesis", "snakefmt"} <= hidden  # the test suite's own tools
    assert "pygments" not in hidden and "snakemake" not in hidden and "torch" not in hidden  # --report, the workflow
    assert "pygments" in hidden_modules("") and "snakemake" in hidden_modules("")  # a plain `pip install .`


def run(root: Path, command: str, timeout: int = 900, install: Path | None = None) -> subprocess.CompletedProcess:
    """A documented command, from the checkout's root; with `install`, in the environment of the
    install whose sitecustomize that folder holds (quick_start_install)."""
    path = [str(install)] if install else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path + [str(root / "src")]),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    env.pop("STABGAP_DATA_ROOT", None)
    if STAGED and command.startswith("python -m stabgap.speed"):
        env["STABGAP_DATA_ROOT"] = STAGED
    return subprocess.run(["bash", "-c", "set -eo pipefail\n" + command], cwd=root, env=env, capture_output=True,
                          text=True, timeout=timeout)


def prepared(command: str) -> tuple[str, str]:
    """(how it is run, the command to run): "skip" with the reason, "dry", "real", or "fails" (a
    command meant to exit non-zero here: EXPECTED_TO_FAIL)."""
    for key, why in NOT_RUN.items():
        if key in command:
            return "skip", why
    if command in EXPECTED_TO_FAIL:
        return "fails", EXPECTED_TO_FAIL[command][0]
    if "pip install" in command:  # the install is CI's own set-up: run what follows it
        command = command.split("&&")[-1].strip()
        if command in NOT_RUN:
            return "skip", NOT_RUN[command]
    if command.startswith("export STABGAP_DATA_ROOT"):
        return "skip", "sets the data folder for the commands after it (here: $STABGAP_DATA_ROOT, if staged)"
    if command.startswith("python -m stabgap.speed") and "split_mnist" in command and not STAGED:
        return "skip", "the speed harness on MNIST needs the full MNIST staged under $STABGAP_DATA_ROOT"
    if command.startswith("python -m stabgap.speed"):
        # as written, without the best-rate search (a minute or two of the ResNet on a CPU, for a
        # reference column): tests/test_speed.py checks the search on tiny settings. CIFAR without
        # staged data: synthetic images of the right shape
        return "real", command if "--no-reference" in command else command + " --no-reference"
    if any(key in command for key in DRY) or command == "snakemake -n":
        return "dry", command if " -n" in command else command + " -n"
    return "real", command


def test_every_command_is_classified_and_the_docs_hold_commands():
    assert len(COMMANDS) > 20
    kinds = [prepared(c)[0] for _, c in COMMANDS]
    assert kinds.count("real") > 10 and kinds.count("dry") >= 3


@pytest.mark.slow
def test_the_commands_work_as_written(checkout, quick_start_install):
    """In order, file by file (a targeted rebuild after the demo has run, as a reader would), in the
    environment the quick start installs."""
    failures, skipped = [], []
    for name, command in COMMANDS:
        kind, what = prepared(command)
        if kind == "skip":
            skipped.append(f"{name}: {command[:60]} ({what})")
            continue
        out = run(checkout, what, install=quick_start_install)
        if kind == "fails":
            _, status, words, _ = EXPECTED_TO_FAIL[command]
            if out.returncode != status or words not in out.stdout + out.stderr or "Traceback" in out.stderr:
                failures.append(f"{name}: {what} (meant to exit {status} with {words!r})\n{out.stdout[-1500:]}\n"
                                f"{out.stderr[-1500:]}")
            continue
        if out.returncode != 0 or "Traceback" in out.stderr:
            failures.append(f"{name}: {what}\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}")
        elif kind == "dry" and "snakemake" in what:
            assert "Job stats" in out.stdout + out.stderr or "Nothing to be done" in out.stdout + out.stderr, what
    print("\nnot run here:\n  " + "\n  ".join(skipped))
    assert not failures, "\n\n".join(failures)
    results = checkout / "results" / "demo"
    assert (results / "report.html").exists() and (results / "reproduction" / "curves.md").exists()
    assert (results / "runs" / "split_mnist" / "ngm" / "seed42" / "metrics.json").exists()


def test_every_relative_link_in_the_docs_names_a_file_that_exists():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not re.match(r"[a-z]+:", target) and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert not broken, broken
