"""Docs that run verbatim (issue 12, item 8): every fenced block of README.md and docs/*.md.

Each markdown file is read top to bottom in its own scratch folder, as a reader following it would:
shell blocks (```bash, or no language) run line by line with bash, with this checkout's `potstill`
and `python` first on PATH; ```python blocks run with the same interpreter; ```yaml blocks are
validated against the recipe schema (a whole recipe, or a fragment merged into a minimal one);
```text is not run. A block whose first line names a file (`# my_models.py`) is saved as that file
for later blocks. The scratch folder holds copies of recipes/, benchmarks/, the Makefile and an
installed-looking .venv whose `potstill` is this checkout's.

Long steps run with a reduced budget, declared in the markdown right above the block; the marker
convention is in tests/docs/markdown.py. A failure lists every block that failed, with the command
and the end of its output.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml

from potstill import config
from potstill.config.safe_yaml import parse_yaml
from potstill.data import DATASETS
from potstill.errors import PotstillError
from potstill.knowledge.wiring import build_terms
from potstill.models import MODELS
from potstill.recipe import Recipe
from tests.conftest import FMNIST
from tests.docs.markdown import Block, MarkdownProblem, blocks, unfenced_commands, without_comment

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent
FMNIST_FILE = FMNIST / "train-images-idx3-ubyte.gz"  # as tests/conftest.py checks
COMMAND_TIMEOUT = 600  # seconds; a reduced-budget step takes seconds
# the environment at import: the docs run while other tests monkeypatch os.environ (COLUMNS, cache folders)
START_ENV = dict(os.environ)
# what a YAML fragment (no `name:`) is merged into before it is validated
MINIMAL_RECIPE = {
    "name": "docs_fragment",
    "data": {"name": "digits", "hflip": True},
    "teacher": {"model": {"name": "cnn"}},
    "student": {"name": "small_cnn"},
}
# stands in for the `potstill` an install puts in .venv/bin; appends the block's budget
WRAPPER = """#!{python}
import os, shlex, sys
args = sys.argv[1:]
budget = shlex.split(os.environ.get("DOCS_TEST_BUDGET", ""))
if (args[:1] in (["train"], ["distill"], ["generate"], ["search"], ["sweep"]) and "--resume" not in args) or args[:2] == ["cache", "build"]:
    args += budget
os.execv({potstill!r}, [{potstill!r}, *args])
"""


class Reader:
    """A reader following one markdown file in a scratch folder."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.failures: list[str] = []
        self.skipped: list[str] = []
        self.seconds: list[tuple[str, float]] = []
        for folder in ("recipes", "benchmarks"):
            shutil.copytree(ROOT / folder, scratch / folder, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "Makefile", scratch / "Makefile")
        shutil.copy(ROOT / "pyproject.toml", scratch / "pyproject.toml")
        os.utime(scratch / "pyproject.toml", (0, 0))  # older than the install stamp: make installs nothing
        wrapper = WRAPPER.format(python=sys.executable, potstill=str(VENV_BIN / "potstill"))
        for folder in (scratch / ".docs-bin", scratch / ".venv" / "bin"):
            folder.mkdir(parents=True)
            (folder / "potstill").write_text(wrapper)
            (folder / "potstill").chmod(0o755)
        (scratch / ".venv" / ".installed").touch()

    def env(self, budget: list[str]) -> dict[str, str]:
        path = f"{self.scratch / '.docs-bin'}{os.pathsep}{VENV_BIN}{os.pathsep}{START_ENV.get('PATH', '')}"
        return {**START_ENV, "PATH": path, "OMP_NUM_THREADS": "1", "DOCS_TEST_BUDGET": " ".join(budget)}

    def run(self, block: Block, command: list[str] | str, budget: list[str] = ()) -> bool:
        """Run one command in the scratch folder; record a failure naming the block."""
        shown = command if isinstance(command, str) else " ".join(command)
        argv = ["bash", "-c", command] if isinstance(command, str) else command
        start = time.perf_counter()
        try:
            done = subprocess.run(argv, cwd=self.scratch, env=self.env(list(budget)), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            self.failures.append(f"{block.where}: `{shown}` ran over {COMMAND_TIMEOUT} s")
            return False
        finally:
            self.seconds.append((f"{block.where} {shown[:60]}", time.perf_counter() - start))
        if done.returncode != block.exit:
            tail = "\n".join(done.stdout.splitlines()[-25:])
            expected = f" (the block says {block.exit})" if block.exit else ""
            self.failures.append(f"{block.where}: `{shown}` exited {done.returncode}{expected}:\n{tail}")
            return False
        return True

    def read(self, block: Block) -> None:
        if block.skip:
            self.skipped.append(f"{block.where}: {block.skip}")
            return
        for name in block.setups:
            if name not in SETUPS:
                self.failures.append(f"{block.where}: unknown setup {name!r}; known: {', '.join(SETUPS)}")
                return
            SETUPS[name](self, block)
        if block.kind == "shell":
            self.shell(block)
        elif block.kind == "python":
            self.python(block)
        elif block.kind == "yaml":
            self.yaml(block)

    def shell(self, block: Block) -> None:
        potstill_budget = [arg for budget in block.budgets if budget.script is None for arg in budget.args]
        for command in block.command_lines():
            self.run(block, with_script_budget(command, block), potstill_budget)

    def python(self, block: Block) -> None:
        if block.file_name:
            self.save(block)
            return
        script = self.scratch / f"docs_block_{block.line}.py"
        script.write_text(block.text)
        self.run(block, [sys.executable, script.name])

    def yaml(self, block: Block) -> None:
        try:
            check_recipe(block)
        except (PotstillError, MarkdownProblem, yaml.YAMLError) as error:
            self.failures.append(f"{block.where}: {error}")
            return
        if block.file_name:
            self.save(block)

    def save(self, block: Block) -> None:
        path = self.scratch / block.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text)


def with_script_budget(command: str, block: Block) -> str:
    """`command` with the budget of the script it runs (if any) appended, before its comment."""
    code = without_comment(command)
    for budget in block.budgets:
        if budget.script is not None and budget.script in code.split():
            code += " " + " ".join(budget.args)
    return code


def check_recipe(block: Block) -> None:
    """A whole recipe (it has `name:`) or a fragment merged into MINIMAL_RECIPE must validate; one
    that names no model of its own (--import) must also name registered models, losses, datasets."""
    data = parse_yaml(block.text)  # potstill's own loader: duplicate keys are refused as a run would
    if not isinstance(data, dict):
        raise MarkdownProblem(f"a yaml block must be a recipe or a recipe fragment (a mapping), got {data!r}")
    recipe = config.validate(data if "name" in data else merged(MINIMAL_RECIPE, data), Recipe, source="the block")
    models = [spec for spec in (recipe.teacher.model if recipe.teacher else None, recipe.student) if spec]
    if any(spec.name not in MODELS for spec in models) and block.file_name:
        return  # a model registered by the reader's own module (--import); the command that uses it runs it
    DATASETS.check_kwargs(recipe.data.name, recipe.data.args)
    for spec in models:
        MODELS.check_kwargs(spec.name, spec.args, where=f"{spec.name}.args")
    build_terms(recipe.distill, recipe.train.epochs)


def merged(base: dict, fragment: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in fragment.items():
        result[key] = merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else value
    return result


# --- setups: files a block expects that the docs make elsewhere (or say how to make) -------------

FMNIST_TEACHER_BUDGET = ["--set", "teacher.train.epochs=1", "--set", "data.train_size=500", "--set", "data.test_size=300"]


def fmnist_teacher(reader: Reader, block: Block) -> None:
    """runs/fmnist_teacher_cnn, as `potstill train recipes/fmnist/teacher_cnn.yaml` makes it (one epoch)."""
    if not (reader.scratch / "runs" / "fmnist_teacher_cnn").exists():
        reader.run(block, ["potstill", "train", "recipes/fmnist/teacher_cnn.yaml", "--quiet", *FMNIST_TEACHER_BUDGET])


def torch_checkpoints(reader: Reader, block: Block) -> None:
    """model.pt (a plain state dict), ckpt.pth (a training-loop wrapper), ddp.pt (DataParallel names)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    state = model.state_dict()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.save(state, reader.scratch / "model.pt")
    torch.save({"epoch": 3, "state_dict": state, "optimizer": optimizer.state_dict()}, reader.scratch / "ckpt.pth")
    torch.save({f"module.{name}": tensor for name, tensor in state.items()}, reader.scratch / "ddp.pt")


SETUPS = {"fmnist_teacher": fmnist_teacher, "torch_checkpoints": torch_checkpoints}


def uses(text: str, name: str) -> bool:
    """Does a block use the file `name`: by its name, or a python module by its import name?"""
    words = {name, Path(name).stem} if name.endswith(".py") else {name}
    return any(re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", text) for word in words)


# --- the tests ------------------------------------------------------------------------------------

WORKERS = max(2, min(4, os.cpu_count() or 2))  # files read at once; each command runs on one thread


def needs_fashion_mnist(doc: Path) -> bool:
    return any(word in doc.read_text() for word in ("fmnist", "fashion_mnist"))


def read(doc: Path, scratch: Path) -> Reader:
    reader, start = Reader(scratch), time.perf_counter()
    for block in blocks(doc):
        reader.read(block)
    reader.seconds.append(("the whole file", time.perf_counter() - start))
    return reader


def start_reading(session, tmp_path_factory) -> ThreadPoolExecutor | None:
    """Start reading the selected markdown files in background threads (the longest first), at the
    start of the session (tests/conftest.py), so their commands, which run in subprocesses, overlap
    with the rest of the suite. Each doc's Future[Reader] is kept in READINGS; returns the pool
    (None when no docs test is selected)."""
    selected = [item.callspec.params["doc"] for item in session.items
                if getattr(item, "originalname", "") == "test_every_block_runs_as_written"]
    runnable = [doc for doc in selected if FMNIST_FILE.is_file() or not needs_fashion_mnist(doc)]
    if not runnable:
        return None
    runnable.sort(key=lambda doc: sum(len(b.command_lines()) if b.kind == "shell" else b.kind == "python"
                                      for b in blocks(doc)), reverse=True)
    pool = ThreadPoolExecutor(WORKERS)
    READINGS.update({doc: pool.submit(read, doc, tmp_path_factory.mktemp(doc.stem)) for doc in runnable})
    return pool


READINGS: dict = {}  # doc -> Future[Reader], filled by start_reading


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_block_runs_as_written(doc, request):
    if needs_fashion_mnist(doc):
        request.getfixturevalue("fashion_mnist_root")  # skipped without the data, failed with POTSTILL_REQUIRE_DATA=1
    reader = READINGS[doc].result()
    for where, seconds in reader.seconds:
        print(f"{seconds:6.1f} s  {where}")
    for skipped in reader.skipped:
        print(f"skipped {skipped}")
    assert not reader.failures, "\n\n".join(reader.failures)


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_blocks_are_readable_and_saved_files_are_used(doc):
    """Catches: a command in an indented block (never run), an unknown marker or language, a file
    a block says to save that no later block uses (so nothing runs it)."""
    problems = unfenced_commands(doc)
    found = blocks(doc)
    for index, block in enumerate(found):
        name = block.file_name
        if name and not any(uses(later.text, name) for later in found[index + 1 :]):
            problems.append(f"{block.where}: saves {name}, but no later block uses it")
    assert not problems, "\n".join(problems)


REPO_PATH = re.compile(r"(?<![\w./-])(?:benchmarks|recipes|src|tests|docs)/[^\s`'\")\]]*")
LINK = re.compile(r"\]\((?!https?:)([^)#\s]+)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_file_the_docs_name_exists(doc):
    """Catches: a doc naming a script, recipe or page that does not exist (benchmarks/fmnist_kd.py)."""
    text = doc.read_text()
    named = {match.split("#")[0].split("::")[0].rstrip(".,:;") for match in REPO_PATH.findall(text)}  # no anchor, test
    missing = [path for path in sorted(named) if not any(c in path for c in "{*<>") and not (ROOT / path).exists()]
    missing += [link for link in LINK.findall(text) if not (doc.parent / link).exists()]
    assert not missing, f"{doc.name} names what does not exist: {', '.join(missing)}"

