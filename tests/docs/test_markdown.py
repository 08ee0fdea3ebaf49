"""How the docs test reads markdown: fences, markers, commands. Each test names the bug it catches."""

import pytest

from tests.docs.markdown import MarkdownProblem, blocks, unfenced_commands, without_comment


def write(tmp_path, text):
    path = tmp_path / "doc.md"
    path.write_text(text)
    return path


def test_a_comment_ends_a_command_but_a_hash_in_quotes_or_a_word_does_not():
    """Catches: budget arguments appended inside a trailing comment (never seen by the command)."""
    assert without_comment("potstill eval runs/x   # re-measure") == "potstill eval runs/x"
    assert without_comment("echo '# not a comment' a#b") == "echo '# not a comment' a#b"
    assert without_comment("# a whole-line comment") == ""


def test_markers_apply_to_the_next_block_only(tmp_path):
    """Catches: a budget or skip leaking onto the following block."""
    doc = write(tmp_path, "<!-- docs-test: budget --set train.epochs=1 -->\n"
                          "<!-- docs-test: budget benchmarks/kd_seeds.py --seeds 0 -->\n"
                          "<!-- docs-test: setup fmnist_teacher -->\n"
                          "```bash\npotstill train a.yaml \\\n  --quiet   # one command\n\n# only a comment\n```\n\n"
                          "<!-- docs-test: skip: needs a GPU -->\n<!-- docs-test: exit 2 -->\n```\nmake gpu\n```\n\n"
                          "```python\n# my_models.py\nx = 1\n```\n")
    first, second, third = blocks(doc)
    assert first.command_lines() == ["potstill train a.yaml    --quiet   # one command"]
    assert [(b.script, b.args) for b in first.budgets] == [(None, ["--set", "train.epochs=1"]),
                                                            ("benchmarks/kd_seeds.py", ["--seeds", "0"])]
    assert first.setups == ["fmnist_teacher"] and first.skip is None and first.exit == 0
    assert second.skip == "needs a GPU" and second.exit == 2 and second.kind == "shell" and not second.budgets
    assert third.kind == "python" and third.file_name == "my_models.py" and second.file_name is None


@pytest.mark.parametrize("text, message", [
    ("<!-- docs-test: skip: -->\n```\nls\n```\n", "needs a reason"),
    ("<!-- docs-test: budgett --set a=1 -->\n```\nls\n```\n", "unknown marker"),
    ("<!-- docs-test: skip: x -->\n\n```\nls\n```\n", "right above a ``` fence"),
    ("```rust\nfn main() {}\n```\n", "not a kind the docs test knows"),
    ("```bash\nls\n", "never closed"),
])
def test_what_the_reader_cannot_follow_is_refused_with_the_line(tmp_path, text, message):
    """Catches: a misspelt marker or an unknown language silently leaving a block unchecked."""
    with pytest.raises(MarkdownProblem, match=message):
        blocks(write(tmp_path, text))


def test_indented_commands_are_found(tmp_path):
    """Catches: a command written as an indented code block, which the docs test would never run."""
    doc = write(tmp_path, "Run it:\n\n    potstill distill r.yaml\n\n```\n    potstill fenced\n```\n")
    assert unfenced_commands(doc) == [("doc.md:3: `potstill distill r.yaml` is an indented code block; "
                                       "fence it as ```bash so the docs test runs it")]
