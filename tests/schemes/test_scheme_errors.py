"""Bad scheme recipes fail before anything trains, with one message that names the fix."""

import pytest

from potstill import config
from potstill.cli.main import main
from potstill.errors import PotstillError
from potstill.recipe import Recipe
from potstill.startup import preflight
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
    ("refine outside offline", scheme_recipe("online", refine={"epochs": 2}), "refine.epochs: scheme 'online' has no refinement phase"),
    ("init outside a transfer", scheme_recipe("snapshot", distill={"loss": None, "terms": [{"loss": "kd", "stages": ["init", "main"]}], "init_epochs": 1}),
     "distill.init_epochs: scheme 'snapshot' has no feature-initialisation stage"),
    ("missing teacher checkpoint", scheme_recipe("multi_teacher", scheme__teachers=[TEACHER, {**TEACHER, "checkpoint": "no/such/run"}]),
     "scheme.teachers[1].checkpoint: teacher checkpoint not found"),
    ("byot without exits", scheme_recipe("byot", scheme__args={"exits": []}), None),
    ("bad peer model", scheme_recipe("online", scheme__peers=[{"name": "mlp", "args": {"hiden": [3]}}]), "scheme.peers[0].args"),
]


@pytest.mark.parametrize("recipe,fragment", [case[1:] for case in CASES if case[2]], ids=[case[0] for case in CASES if case[2]])
def test_bad_scheme_recipe_is_refused_before_training(recipe, fragment):
    with pytest.raises(PotstillError) as error:
        check(recipe)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_byot_with_no_exits_says_so(tmp_path):
    from tests.engine.test_resume import run_recipe

    with pytest.raises(PotstillError, match="scheme.args.exits is empty, so there is no shallow section"):
        run_recipe(tmp_path, scheme_recipe("byot", scheme__args={"exits": []}))


def test_cache_build_and_train_explain_what_the_scheme_does_instead(tmp_path, capsys):
    online = write_recipe(tmp_path, scheme_recipe("online"), "online.yaml")
    assert_user_error(capsys, ["cache", "build", str(online), "--out", str(tmp_path / "c")], "scheme 'online' has no single frozen teacher")
    multi = write_recipe(tmp_path, scheme_recipe("multi_teacher"), "multi.yaml")
    assert_user_error(capsys, ["train", str(multi)], "`potstill distill RECIPE` trains those")


def test_a_bad_model_argument_lists_only_what_a_recipe_may_set():
    with pytest.raises(PotstillError) as error:
        check(scheme_recipe("online", scheme__peers=[{"name": "mlp", "args": {"hiden": [3]}}]))
    message = str(error.value)
    assert "did you mean 'hidden'" in message and "it accepts: hidden" in message
    assert "input_shape" not in message and "num_classes" not in message


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


@pytest.mark.parametrize("scheme", ["online", "collaborative", "byot", "snapshot", "multi_teacher"])
def test_logit_schemes_take_every_logit_loss_and_name_every_other(scheme):
    from potstill.knowledge import LOSSES

    for loss in LOSSES.names():
        kind = LOSSES.get(loss)
        recipe = scheme_recipe(scheme, distill={"loss": loss, "alpha": 1.0, "beta": None})
        if kind.pairing == "none" and kind.needs_teacher and kind.prepare_epochs == 0:
            check(recipe)  # accepted
        else:
            with pytest.raises(PotstillError, match=f"loss '{loss}'"):
                check(recipe)
