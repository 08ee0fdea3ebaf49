"""`potstill convert`: torch.save checkpoints to safetensors, read with weights_only=True only.

Real torch.save files made here: a plain state dict, the common wrappers, a DataParallel save, a
file with an object that weights_only refuses; and a round trip into a recipe's teacher.checkpoint.
"""

import json

import pytest
import torch
from safetensors import safe_open

from potstill.cli.main import main
from potstill.engine.checkpoint import load_tensors
from potstill.models import create_model
from tests.conftest import tiny_recipe, write_recipe


class Custom:
    """Any class of the user's: weights_only=True refuses to build it."""

    def __init__(self):
        self.note = "not a tensor"


def teacher_model():
    """The tiny recipe's teacher architecture (synthetic data: 1x8x8, 10 classes), fresh weights."""
    torch.manual_seed(0)
    return create_model("small_cnn", input_shape=(1, 8, 8), num_classes=10, channels=[8], hidden=16)


def teacher_state():
    return teacher_model().state_dict()


def convert(capsys, *argv):
    capsys.readouterr()
    code = main(["convert", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_same_tensors(path, expected):
    tensors, _ = load_tensors(path)
    assert tensors.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensors[name], tensor), name


def test_a_plain_state_dict_converts_and_the_output_says_what_it_wrote(tmp_path, capsys):
    """Catches: tensors renamed or changed on the way, a non-safetensors output, or a report
    without the counts a user checks the file against."""
    state = teacher_state()
    torch.save(state, tmp_path / "model.pt")
    code, out, err = convert(capsys, tmp_path / "model.pt", "-o", tmp_path / "model.safetensors")
    assert code == 0, err
    assert_same_tensors(tmp_path / "model.safetensors", state)
    values = sum(tensor.numel() for tensor in state.values())
    size = (tmp_path / "model.safetensors").stat().st_size
    assert f"{len(state)} tensors" in out and f"{values:,} parameters" in out and f"{size:,} bytes" in out
    assert "weights_only=True" in out and "module." not in out
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as reader:
        assert json.loads(reader.metadata()["potstill"])["converted_from"] == "model.pt"


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state_dict"])
def test_a_wrapped_state_dict_is_found_and_its_key_named(tmp_path, capsys, key):
    """Catches: a wrapper with an epoch counter and an optimizer refused, or the wrong entry taken."""
    state = teacher_state()
    optimizer = {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}
    torch.save({"epoch": 7, key: state, "optimizer": optimizer}, tmp_path / "wrapped.pt")
    code, out, err = convert(capsys, tmp_path / "wrapped.pt", "-o", tmp_path / "out.safetensors")
    assert code == 0, err
    assert f"key '{key}'" in out
    assert_same_tensors(tmp_path / "out.safetensors", state)


def test_several_state_dicts_need_key_and_key_picks_one(tmp_path, capsys):
    """Catches: picking one of two state dicts (model, ema) silently."""
    state = teacher_state()
    ema = {name: tensor + 1 if tensor.is_floating_point() else tensor for name, tensor in state.items()}
    torch.save({"model": state, "ema": ema}, tmp_path / "two.pt")
    code, _, err = convert(capsys, tmp_path / "two.pt", "-o", tmp_path / "out.safetensors")
    assert code == 2 and "model, ema" in err and "--key NAME" in err and not (tmp_path / "out.safetensors").exists()
    code, _, err = convert(capsys, tmp_path / "two.pt", "-o", tmp_path / "out.safetensors", "--key", "ema")
    assert code == 0, err
    assert_same_tensors(tmp_path / "out.safetensors", ema)
    code, _, err = convert(capsys, tmp_path / "two.pt", "-o", tmp_path / "other.safetensors", "--key", "nope")
    assert code == 2 and "no key 'nope'" in err and "model, ema" in err


def test_a_dataparallel_prefix_is_stripped_only_when_asked(tmp_path, capsys):
    """Catches: 'module.' stripped silently (names changed behind the user's back), or kept
    without a hint, so the model later reports every key missing."""
    state = teacher_state()
    torch.save({f"module.{name}": tensor for name, tensor in state.items()}, tmp_path / "dp.pt")
    code, out, err = convert(capsys, tmp_path / "dp.pt", "-o", tmp_path / "kept.safetensors")
    assert code == 0, err
    assert "--strip-prefix module. is probably wanted" in out
    assert all(name.startswith("module.") for name in load_tensors(tmp_path / "kept.safetensors")[0])
    code, out, err = convert(capsys, tmp_path / "dp.pt", "-o", tmp_path / "plain.safetensors", "--strip-prefix", "module.")
    assert code == 0, err
    assert "probably wanted" not in out
    assert_same_tensors(tmp_path / "plain.safetensors", state)


def test_non_tensor_entries_are_named(tmp_path, capsys):
    """Catches: a hyperparameter or counter written into the weights file, or dropped silently."""
    torch.save({**teacher_state(), "epoch": 3, "note": "best"}, tmp_path / "mixed.pt")
    code, _, err = convert(capsys, tmp_path / "mixed.pt", "-o", tmp_path / "out.safetensors")
    assert code == 2 and "epoch (int)" in err and "note (str)" in err and err.count("\n") == 1
    assert not (tmp_path / "out.safetensors").exists()


def test_a_file_weights_only_refuses_gets_one_line_and_the_way_out(tmp_path, capsys):
    """Catches: potstill retrying without weights_only (running the file's code), torch's advice to
    do so passed on, or a traceback instead of one line."""
    torch.save({"model": teacher_state(), "extra": Custom()}, tmp_path / "custom.pt")
    code, out, err = convert(capsys, tmp_path / "custom.pt", "-o", tmp_path / "out.safetensors")
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "Custom" in err and "never unpickles" in err and "torch.save(model.state_dict(), path)" in err
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err
    assert not (tmp_path / "out.safetensors").exists()


def test_a_damaged_file_is_one_line_without_torchs_advice(tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    code, _, err = convert(capsys, tmp_path / "junk.pt", "-o", tmp_path / "out.safetensors")
    assert code == 2 and "not a readable torch.save file" in err and "False" not in err and err.count("\n") == 1


def test_an_existing_output_is_kept_unless_force(tmp_path, capsys):
    """Catches: an earlier file overwritten without being asked."""
    state = teacher_state()
    torch.save(state, tmp_path / "model.pt")
    (tmp_path / "model.safetensors").write_bytes(b"earlier")
    code, _, err = convert(capsys, tmp_path / "model.pt", "-o", tmp_path / "model.safetensors")
    assert code == 2 and "--force" in err and (tmp_path / "model.safetensors").read_bytes() == b"earlier"
    code, _, err = convert(capsys, tmp_path / "model.pt", "-o", tmp_path / "model.safetensors", "--force")
    assert code == 0, err
    assert_same_tensors(tmp_path / "model.safetensors", state)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_missing_input_or_a_wrong_suffix_is_one_line(tmp_path, capsys):
    code, _, err = convert(capsys, tmp_path / "absent.pt", "-o", tmp_path / "out.safetensors")
    assert code == 2 and "absent.pt not found" in err
    torch.save(teacher_state(), tmp_path / "model.pt")
    code, _, err = convert(capsys, tmp_path / "model.pt", "-o", tmp_path / "model.bin")
    assert code == 2 and ".safetensors" in err and not (tmp_path / "model.bin").exists()


def test_a_converted_checkpoint_teaches_in_a_recipe(tmp_path, capsys):
    """The round trip: a DataParallel torch.save wrapper, converted, is the recipe's teacher."""
    state = teacher_state()
    torch.save({"epoch": 2, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "teacher.pt")
    code, _, err = convert(capsys, tmp_path / "teacher.pt", "-o", tmp_path / "teacher.safetensors", "--strip-prefix", "module.")
    assert code == 0, err
    recipe = tiny_recipe(teacher__checkpoint=str(tmp_path / "teacher.safetensors"))
    del recipe["teacher"]["train"]
    recipe["distill"]["baseline"] = False
    recipe["train"]["epochs"] = 1
    path = write_recipe(tmp_path, recipe)
    assert main(["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0, capsys.readouterr().err
    assert not (tmp_path / "run" / "teacher").exists()  # loaded, not trained
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    teacher = summary["models"][0]
    assert [row["role"] for row in summary["models"]] == ["teacher", "student"]
    assert teacher["weights"] == str(tmp_path / "teacher.safetensors")  # every tensor name matched the model
    assert teacher["params"] == sum(parameter.numel() for parameter in teacher_model().parameters())


def test_the_teacher_checkpoint_error_names_the_convert_command(tmp_path, capsys):
    """A .pt teacher.checkpoint points at `potstill convert` (and still never at torch.load)."""
    torch.save(teacher_state(), tmp_path / "teacher.pt")
    path = write_recipe(tmp_path, tiny_recipe(teacher__checkpoint=str(tmp_path / "teacher.pt")))
    assert main(["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"potstill convert {tmp_path / 'teacher.pt'} -o {tmp_path / 'teacher.safetensors'}" in err
