"""Bad scheme recipes fail before anything trains, with one message that names the fix."""

import pytest

from potstill import config
from potstill.cli.main import main
from potstill.errors import PotstillError
from potstill.pipeline import preflight
from potstill.recipe import Recipe
from tests.cli.test_cli import assert_user_error
from tests.conftest import write_recipe
from tests.schemes.helpers import PEER, TEACHER, scheme_recipe


def check(recipe: dict) -> None:
    preflight(config.validate(recipe, Recipe), "distill")


CASES = [
    ("unknown name", scheme_recipe("offline", scheme={"name": "mutual"}), "unknown scheme 'mutual'"),
    ("unknown arg", scheme_recipe("born_again", scheme__args={"generation": 2}), "'generation' (did you mean 'generations'?)"),
    ("wrong arg type", scheme_recipe("born_again", scheme__args={"generations": "two"}), "generations: expected an integer"),
    ("arg below range", scheme_recipe("born_again", scheme__args={"generations": 0}), "generations must be at least 1"),
    ("peers on offline", scheme_recipe("offline", scheme={"name": "offline", "peers": [PEER]}), "scheme.peers is read only by scheme collaborative and online"),
    ("online without peers", scheme_recipe("online", scheme={"name": "online"}), "needs at least one peer"),
    ("teacher with online", {**scheme_recipe("online"), "teacher": TEACHER}, "scheme 'online' has no pre-trained teacher"),
    ("feature loss with online", scheme_recipe("online", distill={"loss": "at"}), "loss 'at' compares intermediate layers"),
    ("virtual teacher with snapshot", scheme_recipe("snapshot", distill={"loss": "lsr"}), "uses no teacher"),
    ("one teacher", scheme_recipe("multi_teacher", scheme__teachers=[TEACHER]), "at least two teachers"),
    ("weights length", scheme_recipe("multi_teacher", scheme__args={"combine": "weights", "weights": [1.0]}), "one weight per teacher (2 numbers)"),
    ("weights without rule", scheme_recipe("multi_teacher", scheme__args={"weights": [1.0, 2.0]}), "used only with combine: weights"),
    ("teacher with multi", {**scheme_recipe("multi_teacher"), "teacher": TEACHER}, "move the teacher section into that list"),
    ("start after end", scheme_recipe("snapshot", scheme__args={"start_epoch": 3}), "start_epoch is 3 but train.epochs is 3"),
    ("last epoch at 0", scheme_recipe("snapshot", scheme__args={"start_epoch": 0}), "set start_epoch: 1 or more"),
    ("cache with online", scheme_recipe("online", distill__cache={"enabled": True}), "has no single frozen teacher"),
    ("assistant without list", scheme_recipe("assistant", scheme={"name": "assistant"}), "needs scheme.assistants"),
    ("explicit pairs in a chain", scheme_recipe("assistant", distill={"loss": "fitnet", "pairs": [{"student": "hidden1", "teacher": "fc1"}]}), "use pairs: auto"),
    ("assistant without teacher", {k: v for k, v in scheme_recipe("assistant").items() if k != "teacher"}, "no teacher section"),
    ("bad peer model", scheme_recipe("online", scheme__peers=[{"name": "mlp", "args": {"hiden": [3]}}]), "scheme.peers[0].args"),
]


@pytest.mark.parametrize("recipe,fragment", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_scheme_recipe_is_refused_before_training(recipe, fragment):
    with pytest.raises(PotstillError) as error:
        check(recipe)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_scheme_shorthand_is_a_name():
    recipe = config.validate(scheme_recipe("snapshot", scheme="snapshot"), Recipe)
    assert recipe.scheme.name == "snapshot" and recipe.scheme.args == {}


def test_cli_reports_a_scheme_error_without_traceback_and_writes_nothing(tmp_path, capsys):
    path = write_recipe(tmp_path, scheme_recipe("online", scheme={"name": "online"}))
    assert_user_error(capsys, ["distill", str(path), "--run-dir", str(tmp_path / "run")], "needs at least one peer")
    assert not (tmp_path / "run").exists()


def test_cli_lists_schemes(capsys):
    assert main(["list", "schemes"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("offline", "online", "byot", "born_again", "multi_teacher", "assistant"))
