"""On-policy distillation (schemes/gkd.py): the prompts it cuts, the settings it refuses, that the
student really trains on its own samples (with lmbda 1 every step, with lmbda 0 never; only the
generated tokens count), and that an interrupted run resumes to the same bits."""

from __future__ import annotations

import pytest
import torch

from potstill.errors import PotstillError
from potstill.positions import IGNORE_INDEX
from potstill.schemes import gkd
from potstill.schemes.gkd import GKD, OnPolicyDistillation, prompts
from potstill.schemes.offline import OfflineDistillation
from tests.engine.test_resume import run_recipe
from tests.lm.conftest import distill_recipe
from tests.resume_checks import assert_same_files, assert_same_log, interrupt_and_resume

X = IGNORE_INDEX
PROMPT, NEW = 8, 8  # prompt + continuation = the context (16)


def test_prompts_cut_each_rows_first_tokens():
    batch = {"input_ids": torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
             "target": torch.tensor([[2, 3, 4, 5, X], [7, 8, X, X, X]])}
    ids, mask = prompts(batch, 4)  # row 1 has only 3 real tokens: its whole row
    assert ids.tolist() == [[1, 2, 3, 4], [6, 7, 8, 0]] and mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    ids, mask = prompts(batch, 2)
    assert ids.tolist() == [[1, 2], [6, 7]] and mask.tolist() == [[1, 1], [1, 1]]


def test_prompts_of_prompt_response_rows_end_where_the_first_target_is_predicted():
    """Row 0 learns from position 2 (prompt 1 2 3), row 1 from position 0 (prompt 4)."""
    batch = {"input_ids": torch.tensor([[1, 2, 3, 5, 6, 9], [4, 7, 8, 9, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
             "target": torch.tensor([[X, X, 5, 6, 9, X], [7, 8, 9, X, X, X]])}
    ids, mask = prompts(batch, None)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"lmbda": -0.1}, "lmbda"), ({"lmbda": 1.5}, "lmbda"), ({"lmbda": True}, "lmbda"),
    ({"max_new_tokens": 0}, "max_new_tokens"), ({"prompt_tokens": 2.5}, "prompt_tokens"),
    ({"temperature": 0.0}, "temperature"), ({"top_p": 1.5}, "top_p"),
])
def test_gkd_refuses_settings_outside_their_range(kwargs, fragment):
    with pytest.raises(PotstillError, match=f"scheme gkd: {fragment}"):
        GKD(**kwargs)


def test_gkd_keeps_its_settings():
    scheme = GKD(lmbda=1, prompt_tokens=3, max_new_tokens=5, temperature=0.5, top_p=0.9)
    assert (scheme.lmbda, scheme.prompt_tokens, scheme.max_new_tokens, scheme.temperature, scheme.top_p) == (1.0, 3, 5, 0.5, 0.9)
    assert GKD.cache is False


def gkd_recipe(plays, teacher_run, lmbda, epochs=1, train_size=48):
    recipe = distill_recipe(plays, teacher_run)
    recipe["scheme"] = {"name": "gkd", "args": {"lmbda": lmbda, "prompt_tokens": PROMPT, "max_new_tokens": NEW}}
    recipe["distill"]["baseline"] = False
    recipe["train"]["epochs"] = epochs
    recipe["data"]["train_size"] = train_size  # 3 batches of 16 per epoch
    return recipe


class Recorder:
    """Wraps gkd.generate and the two steps: what the student wrote, which batch each step got and
    which batch (with which alpha) the distillation step was given."""

    def __init__(self, monkeypatch):
        self.generated, self.steps, self.distilled = [], [], []
        real_generate, on_policy_step, offline_step = gkd.generate, OnPolicyDistillation.step, OfflineDistillation.step

        def generate(model, input_ids, attention_mask, **kwargs):
            out = real_generate(model, input_ids, attention_mask, **kwargs)
            self.generated.append({"model": model, "prompt": input_ids.clone(), "out": out, "kwargs": kwargs})
            return out

        def step(task, batch, progress):
            self.steps.append({"batch": {k: v.clone() for k, v in batch.items()}, "student": task.model})
            return on_policy_step(task, batch, progress)

        def distill_step(task, batch, progress):
            self.distilled.append({"batch": {k: v.clone() for k, v in batch.items()}, "alpha": task.alpha})
            return offline_step(task, batch, progress)

        monkeypatch.setattr(gkd, "generate", generate)
        monkeypatch.setattr(OnPolicyDistillation, "step", step)
        monkeypatch.setattr(OfflineDistillation, "step", distill_step)


def test_with_lmbda_1_the_student_writes_every_batch_it_learns_from(tmp_path, monkeypatch, plays, teacher_run):
    """Catches: sampling from the teacher (that is seq-KD), from the global RNG, a batch that still
    learns the data's tokens or the prompt, the hard-label term left on the student's own samples."""
    recorder = Recorder(monkeypatch)
    run_recipe(tmp_path / "run", gkd_recipe(plays, teacher_run, lmbda=1.0))
    assert len(recorder.steps) == 3 and len(recorder.generated) == 3 and len(recorder.distilled) == 3
    for step, generated, distilled in zip(recorder.steps, recorder.generated, recorder.distilled):
        student = step["student"]
        assert generated["model"] is student and student.config.n_embd == 16  # the student writes, not the teacher
        assert generated["kwargs"]["temperature"] == 1.0 and generated["kwargs"]["max_new_tokens"] == NEW
        assert generated["kwargs"]["generator"] is not None
        data, sampled = step["batch"], distilled["batch"]
        assert torch.equal(generated["prompt"], data["input_ids"][:, :PROMPT])  # prompts: the rows' first 8 tokens
        ids, target = sampled["input_ids"], sampled["target"]
        assert ids.shape == (16, PROMPT + NEW)
        assert torch.equal(ids[:, :PROMPT], data["input_ids"][:, :PROMPT])
        assert torch.equal(ids, generated["out"].sequences)  # full-length prompts: nothing to re-pack
        assert not torch.equal(ids[:, PROMPT:], data["input_ids"][:, PROMPT:])  # not the data's continuation
        assert (target[:, : PROMPT - 1] == X).all()  # no prompt token is learned
        new = generated["out"].new_tokens
        expected = torch.where(new[:, 1:], ids[:, 1:], X)  # each position predicts the next generated token
        assert torch.equal(target[:, :-1], expected) and (target[:, -1] == X).all()
        assert (target[:, PROMPT - 1] == ids[:, PROMPT]).all()  # the last prompt position predicts the first sample
        assert distilled["alpha"] == 0.0  # no hard labels on the student's own samples
        assert torch.equal(sampled["index"], data["index"])


def test_with_lmbda_0_the_student_never_writes(tmp_path, monkeypatch, plays, teacher_run):
    recorder = Recorder(monkeypatch)
    run_recipe(tmp_path / "run", gkd_recipe(plays, teacher_run, lmbda=0.0))
    assert len(recorder.steps) == 3 and recorder.generated == []
    for step, distilled in zip(recorder.steps, recorder.distilled):
        assert distilled["batch"] is not step["batch"]
        assert torch.equal(distilled["batch"]["input_ids"], step["batch"]["input_ids"])
        assert torch.equal(distilled["batch"]["target"], step["batch"]["target"])  # the data's next tokens
        assert distilled["alpha"] == 0.5  # the recipe's hard-label weight


def test_with_lmbda_half_some_batches_are_sampled_and_the_draws_are_seeded(tmp_path, monkeypatch, plays, teacher_run):
    recorder = Recorder(monkeypatch)
    recipe = gkd_recipe(plays, teacher_run, lmbda=0.5, epochs=2, train_size=96)  # 12 steps
    run_recipe(tmp_path / "a", recipe)
    first = [item["out"].sequences for item in recorder.generated]
    assert len(recorder.steps) == 12 and 0 < len(first) < 12
    recorder.generated.clear()
    run_recipe(tmp_path / "b", recipe)
    assert len(recorder.generated) == len(first)
    assert all(torch.equal(a, item["out"].sequences) for a, item in zip(first, recorder.generated))  # same coins, samples


@pytest.mark.parametrize("where", ["after_epoch_1", "inside_epoch_2"])
def test_gkd_resumes_to_the_same_bits(tmp_path, monkeypatch, plays, teacher_run, where):
    """Catches: coins or samples drawn from a stream that does not restart with the step (the global
    RNG, a generator kept across steps), which a resumed run would draw differently."""
    recipe = gkd_recipe(plays, teacher_run, lmbda=0.5, epochs=2, train_size=96)
    calls = []
    real_generate = gkd.generate
    monkeypatch.setattr(gkd, "generate", lambda *a, **k: calls.append(1) or real_generate(*a, **k))
    run_recipe(tmp_path / "whole", recipe)
    assert 0 < len(calls) < 12  # both kinds of batch in the run
    interrupt_and_resume(tmp_path / "cut", recipe, monkeypatch, OnPolicyDistillation, "student", where)
    assert_same_files(tmp_path / "whole", tmp_path / "cut", "student")
    assert_same_log(tmp_path / "whole", tmp_path / "cut")


@pytest.mark.parametrize("where", ["after_epoch_1", "inside_epoch_2"])
def test_seq_kd_resumes_to_the_same_bits(tmp_path, monkeypatch, plays, teacher_run, where):
    """Catches: a resumed seq_kd run that reads other rows of the teacher's sequences (a batch's
    sample indices mapped to the stored rows differently) or regenerates them."""
    from potstill.cli.main import main
    from potstill.schemes.seq_kd import SequenceDistillation
    from tests.lm.conftest import write_recipe

    recipe = distill_recipe(plays, teacher_run)
    recipe["scheme"] = {"name": "seq_kd", "args": {"sequences": str(tmp_path / "seq"), "prompt_tokens": PROMPT,
                                                    "max_new_tokens": NEW, "batch_size": 8}}
    recipe["distill"] = {"loss": "forward_kl", "temperature": 1.0, "alpha": 1.0, "beta": 0.5, "baseline": False}
    recipe["train"]["epochs"], recipe["data"]["train_size"] = 2, 48
    assert main(["generate", str(write_recipe(tmp_path, recipe, "seq.yaml")), "--quiet"]) == 0
    run_recipe(tmp_path / "whole", recipe)
    interrupt_and_resume(tmp_path / "cut", recipe, monkeypatch, SequenceDistillation, "student", where)
    assert_same_files(tmp_path / "whole", tmp_path / "cut", "student")
    assert_same_log(tmp_path / "whole", tmp_path / "cut")


def test_gkd_starts_the_student_from_the_teacher_when_asked_and_refuses_a_refine_phase(tmp_path, plays, teacher_run, capsys):
    """Catches: student.init ignored by the language-model schemes (the student would start random),
    or refine.epochs accepted by a scheme that never refines."""
    from potstill import config
    from potstill.recipe import Recipe
    from potstill.schemes import create_scheme
    from tests.lm.conftest import cli, write_recipe

    recipe = gkd_recipe(plays, teacher_run, lmbda=0.0)
    recipe["student"] = {"name": "hf_lm_config", "args": {"layers": 1, "hidden": 16, "heads": 2},
                         "init": {"source": "teacher", "method": "select"}}
    code, _, err = cli(capsys, "distill", write_recipe(tmp_path, recipe, "gkd.yaml"), "--run-dir", tmp_path / "run")
    assert code == 0, err
    assert "init   0 tensors copied, 17 selected (" in err and "32 -> 16" in err  # the teacher is 32 wide, the student 16
    refine = config.validate(recipe | {"refine": {"epochs": 1}}, Recipe)
    with pytest.raises(PotstillError, match="refine.epochs: scheme 'gkd' has no refinement phase"):
        create_scheme("gkd", refine.scheme.args).check(refine, [])
