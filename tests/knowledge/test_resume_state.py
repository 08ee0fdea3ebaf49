"""Resume where a loss holds state of its own: CRD's memory banks and partition constants, Factor
Transfer's paraphraser trained in a preparation stage. An interrupted run, resumed, must end with
the same files bit for bit (weights, adapters and loss state, the last checkpoint with every
optimizer tensor) and the same per-epoch log as an uninterrupted one."""

import pytest

from potstill.engine.checkpoint import load_tensors
from potstill.schemes import OfflineDistillation, Preparation
from tests.cli.test_features import conv_recipe
from tests.conftest import tiny_recipe
from tests.engine.test_resume import run_recipe
from tests.resume_checks import assert_same_files, assert_same_log, interrupt_and_resume, optimizer_tensors


def interrupted_then_resumed(tmp_path, monkeypatch, recipe, task_type, stage, where):
    """Run `recipe` whole, then interrupted in `stage` and resumed (resume_checks.interrupt_and_resume)."""
    run_recipe(tmp_path / "whole", recipe)
    interrupt_and_resume(tmp_path / "cut", recipe, monkeypatch, task_type, stage, where)
    return tmp_path / "whole", tmp_path / "cut"


# teacher_check off: the 2-epoch tiny teacher is no better than the student alone; resume is what is tested
CRD = {"loss": None, "teacher_check": "off", "terms": [{"loss": "crd", "args": {"feature_dim": 16, "negatives": 64}}]}


@pytest.mark.parametrize("where", ["after_epoch_1", "inside_epoch_2"])
def test_crd_memory_banks_resume_bit_for_bit(tmp_path, monkeypatch, where):
    """Catches: CRD's memory banks or its normalising constants Z left out of the checkpoint
    (buffers registered with persistent=False: the resumed run restarts from the initial memories
    or re-estimates Z, so student, embedding heads, memories and logged losses differ), and a
    resume that does not restore the RNG the negatives are drawn from."""
    recipe = tiny_recipe(train__epochs=3, distill=CRD)
    whole, cut = interrupted_then_resumed(tmp_path, monkeypatch, recipe, OfflineDistillation, "student", where)
    assert_same_files(whole, cut, "student", files=("model",))
    assert_same_files(whole, cut, "student", files=("module", "checkpoint"))
    state = assert_has(whole / "student" / "module.safetensors", "losses.crd.memory_student", "losses.crd.memory_teacher",
                       "losses.crd.normalizers", "losses.crd.embed_student.weight")
    assert (state["losses.crd.normalizers"] > 0).all()  # Z was estimated, and that estimate was compared
    assert len(optimizer_tensors(whole / "student" / "checkpoint.safetensors")) >= 2 * 6  # student + heads, with moments
    assert_same_log(whole, cut)


FT = {"loss": None, "teacher_check": "off", "terms": [{"loss": "ft", "args": {"paraphraser_epochs": 3}, "weight": 50.0}]}


@pytest.mark.parametrize("stage,where", [("prepare", "after_epoch_1"), ("prepare", "inside_epoch_2"),
                                         ("student", "after_epoch_1")])
def test_ft_interrupted_while_preparing_resumes_bit_for_bit(tmp_path, monkeypatch, stage, where):
    """Catches: the paraphraser's optimizer state (or the paraphraser) not restored when the
    preparation stage resumes, and (stopped in the student stage, so the finished preparation
    stage is loaded, not trained, on resume) a loaded paraphraser that is never frozen and goes on
    training online with the student. Compares the prepared paraphraser, the student with its
    translator, the last checkpoints and the logs of both stages."""
    recipe = conv_recipe(train__epochs=2, distill=FT)
    task_type = Preparation if stage == "prepare" else OfflineDistillation
    whole, cut = interrupted_then_resumed(tmp_path, monkeypatch, recipe, task_type, stage, where)
    assert_same_files(whole, cut, "prepare", files=("model", "checkpoint"))  # the stage's model is the losses module
    assert_same_files(whole, cut, "student", files=("model", "module", "checkpoint"))
    assert_has(whole / "prepare" / "model.safetensors", "ft.encoders.0.0.weight", "ft.decoders.0.0.weight")
    assert_same_log(whole, cut)

def assert_has(path, *names):
    tensors, _ = load_tensors(path)
    missing = [name for name in names if name not in tensors]
    assert not missing, f"{path} lacks {missing}; has {sorted(tensors)[:10]}"
    return tensors
