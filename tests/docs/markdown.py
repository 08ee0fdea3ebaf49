"""The fenced code blocks of a markdown file, with the docs-test markers written above them.

A marker is an HTML comment on the line(s) right before a fence (invisible on GitHub):

    <!-- docs-test: budget --set train.epochs=1 -->            appended to each potstill train/distill/generate/search/sweep/cache build
    <!-- docs-test: budget benchmarks/kd_seeds.py --seeds 0 --> appended to each command running that script
    <!-- docs-test: setup fmnist_teacher -->                   named fixtures (tests/docs/test_snippets.py) first
    <!-- docs-test: commands 1 -->                            only the first N lines are commands; the rest is output
    <!-- docs-test: exit 2 -->                                every command must exit with this status (a refusal shown)
    <!-- docs-test: skip: needs a GPU -->                      not run, for the reason given

A python or YAML block whose first line is a comment naming a file (`# my_models.py`,
`# my_recipe.yaml: ...`) is that file: the reader saves it, and later blocks use it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
NAMED_FILE = re.compile(r"^#\s*(?P<name>\w[\w./-]*\.(?:py|ya?ml))\b")
SHELL, PYTHON, YAML, TEXT = ("", "bash", "sh", "shell"), ("python",), ("yaml", "yml"), ("text",)
KINDS = ("skip", "budget", "setup", "commands", "exit")


class MarkdownProblem(Exception):
    """A block or marker the docs test cannot read; the message names the file and line."""


@dataclass
class Budget:
    """Arguments appended to potstill recipe commands (script None) or to one script's commands."""

    script: str | None
    args: list[str]


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip: str | None = None
    budgets: list[Budget] = field(default_factory=list)
    setups: list[str] = field(default_factory=list)
    commands: int | None = None
    exit: int = 0

    def __post_init__(self) -> None:
        self.kind  # noqa: B018 (refuses an unknown language when the file is read, not when the block runs)

    @property
    def where(self) -> str:
        return f"{self.doc.name}:{self.line}"

    @property
    def kind(self) -> str:
        for kind, langs in (("shell", SHELL), ("python", PYTHON), ("yaml", YAML), ("text", TEXT)):
            if self.lang in langs:
                return kind
        raise MarkdownProblem(f"{self.where}: ```{self.lang} is not a kind the docs test knows; "
                              "use bash, python, yaml, or text for what is not run")

    @property
    def file_name(self) -> str | None:
        """The file a python/YAML block is, when its first line names one."""
        match = NAMED_FILE.match(self.text.lstrip("\n")) if self.kind in ("python", "yaml") else None
        return match.group("name") if match else None

    def command_lines(self) -> list[str]:
        """The shell commands: continuation lines joined, blank and comment-only lines left out."""
        lines = self.text.splitlines()[: self.commands]
        commands, current = [], ""
        for line in lines:
            current += line
            if current.endswith("\\"):
                current = current[:-1] + " "
                continue
            if without_comment(current).strip():
                commands.append(current.strip())
            current = ""
        return commands


def without_comment(line: str) -> str:
    """`line` up to a shell comment: a # at the start or after a space, outside quotes."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line


def read_marker(block: Block, body: str) -> None:
    kind, _, rest = body.partition(":") if body.startswith("skip") else body.partition(" ")
    rest = rest.strip()
    if kind == "skip":
        if not rest:
            raise MarkdownProblem(f"{block.where}: `docs-test: skip:` needs a reason after the colon")
        block.skip = rest
    elif kind == "budget":
        args = shlex.split(rest)
        if not args:
            raise MarkdownProblem(f"{block.where}: `docs-test: budget` needs the arguments to append")
        script = args.pop(0) if args[0].endswith(".py") else None
        block.budgets.append(Budget(script, args))
    elif kind == "setup":
        block.setups += rest.split()
    elif kind == "commands" and rest.isdigit():
        block.commands = int(rest)
    elif kind == "exit" and rest.isdigit():
        block.exit = int(rest)
    else:
        raise MarkdownProblem(f"{block.where}: unknown marker `docs-test: {body}`; known: {', '.join(KINDS)}")


def blocks(doc: Path) -> list[Block]:
    """Every fenced block of `doc`, in order, with its markers."""
    lines = doc.read_text().splitlines()
    found, markers, index = [], [], 0
    while index < len(lines):
        line = lines[index]
        marker, fence = MARKER.match(line), FENCE.match(line)
        if marker:
            markers.append(marker.group("body"))
        elif fence:
            indent = len(fence.group("indent"))
            end = next((i for i in range(index + 1, len(lines)) if lines[i].strip() == "```"), None)
            if end is None:
                raise MarkdownProblem(f"{doc.name}:{index + 1}: a fence that is never closed")
            text = "\n".join(body[indent:] for body in lines[index + 1 : end]) + "\n"
            block = Block(doc, index + 1, fence.group("lang"), text)
            for body in markers:
                read_marker(block, body)
            found.append(block)
            markers, index = [], end
        elif markers:
            raise MarkdownProblem(f"{doc.name}:{index + 1}: a docs-test marker must stand right above a ``` fence")
        index += 1
    if markers:
        raise MarkdownProblem(f"{doc.name}: a docs-test marker at the end of the file, above no block")
    return found


def unfenced_commands(doc: Path) -> list[str]:
    """Indented code lines that look like commands: they would escape the docs test."""
    lines, inside, problems = doc.read_text().splitlines(), False, []
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            inside = not inside
        elif not inside and re.match(r"^ {4,}(potstill|python|make|pip) ", line):
            problems.append(f"{doc.name}:{number}: `{line.strip()}` is an indented code block; fence it as ```bash "
                            "so the docs test runs it")
    return problems
