"""Language-model distillation end to end through the command line, on the fake plays of
tests/lm/conftest.py: train a teacher, distil with a token loss, re-measure with eval, on-policy
(gkd) and sequence-level (generate + seq_kd) distillation, and every mistake the user can make
with them answered in one line and exit 2."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from potstill.engine.checkpoint import load_tensors, save_tensors
from potstill.models import create_model
from tests.conftest import write_recipe
from tests.lm.conftest import CONTEXT, VOCABULARY, cli, distill_recipe


def summary_of(run):
    return json.loads((run / "summary.json").read_text())


def rows_of(summary):
    return {row["role"]: row for row in summary["models"]}


def distill(tmp_path, capsys, recipe, name="run", *extra):
    code, out, err = cli(capsys, "distill", write_recipe(tmp_path, recipe, f"{name}.yaml"), "--run-dir", tmp_path / name, *extra)
    assert code == 0, err
    return summary_of(tmp_path / name), out


def user_error(capsys, argv, *fragments):
    code, _, err = cli(capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err and err.count("potstill: error:") == 1, err
    message = err.split("potstill: error: ", 1)[1].strip()
    assert "\n" not in message, message  # one line
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_trained_teacher_beats_token_frequencies(teacher_run):
    teacher = rows_of(summary_of(teacher_run))["teacher"]
    assert teacher["test_ppl"] < 30 and 0 < teacher["test_bpb"] < 4 and teacher["test_tokens"] > 1000
    assert (teacher_run / "teacher" / "model.safetensors").is_file()


def test_token_kd_reports_perplexity_and_eval_reproduces_it(tmp_path, capsys, plays, teacher_run):
    """Catches: a summary without the LM fields, a verdict from top-1 instead of perplexity, and an
    eval that rebuilds the models (or the BPE) differently from the run."""
    summary, out = distill(tmp_path, capsys, distill_recipe(plays, teacher_run))
    rows = rows_of(summary)
    assert list(rows) == ["teacher", "baseline", "student"]
    for row in rows.values():
        assert row["test_ppl"] > 1 and row["test_bpb"] > 0 and 0 <= row["test_acc"] <= 1 and row["test_tokens"] > 0
    assert rows["teacher"]["test_ppl"] == pytest.approx(rows_of(summary_of(teacher_run))["teacher"]["test_ppl"], rel=1e-6)
    student, baseline = rows["student"], rows["baseline"]
    assert summary["perplexity_change_pct"] == pytest.approx(100 * (student["test_ppl"] / baseline["test_ppl"] - 1), abs=1e-3)
    assert student["teacher_agreement"] is not None and student["params"] < rows["teacher"]["params"]
    header = next(line for line in out.splitlines() if line.lstrip().startswith("model"))
    assert header.split()[:3] == ["model", "ppl", "bpb"]
    assert f"{student['test_ppl']:.2f}" in out and "test perplexity" in out and "against the student trained alone" in out
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("test_ppl" in record for record in records)
    assert {name for r in records if r["stage"] == "student" for name in r["terms"]} == {"ce", "forward_kl"}
    assert records[-1]["test_ppl"] == pytest.approx(student["test_ppl"], rel=1e-6)  # measured the same way

    code, _, err = cli(capsys, "eval", tmp_path / "run")
    assert code == 0, err
    again = rows_of(json.loads((tmp_path / "run" / "eval.json").read_text()))
    for role, row in rows.items():
        for key in ("test_ppl", "test_bpb", "test_acc", "test_tokens"):
            assert again[role][key] == pytest.approx(row[key], rel=1e-6), (role, key)


def gkd_recipe(plays, teacher_run, **args):
    recipe = distill_recipe(plays, teacher_run)
    recipe["scheme"] = {"name": "gkd", "args": {"lmbda": 0.5, "prompt_tokens": 8, "max_new_tokens": 8, **args}}
    recipe["distill"]["baseline"] = False
    return recipe


def test_gkd_distils_with_the_students_samples(tmp_path, capsys, plays, teacher_run):
    summary, _ = distill(tmp_path, capsys, gkd_recipe(plays, teacher_run))
    rows = rows_of(summary)
    assert list(rows) == ["teacher", "student"] and rows["student"]["test_ppl"] > 1
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    student = [record for record in records if record["stage"] == "student"]
    assert len(student) == 2 and all(record["sampling_ms"] > 0 for record in student)  # the student wrote some batches


def test_gkd_runs_when_prompt_and_continuation_are_shorter_than_the_context(tmp_path, capsys, plays, teacher_run):
    recipe = gkd_recipe(plays, teacher_run, lmbda=1.0, prompt_tokens=4, max_new_tokens=8)
    recipe["train"]["epochs"] = 1
    recipe["data"]["train_size"] = 32
    summary, _ = distill(tmp_path, capsys, recipe)
    assert rows_of(summary)["student"]["test_ppl"] > 1


@pytest.mark.parametrize("args, fragments", [
    ({"lmbda": 1.5}, ["scheme gkd: lmbda", "must lie in [0, 1], got 1.5"]),
    ({"top_p": 0.0}, ["scheme gkd: top_p must lie in (0, 1]"]),
    ({"temperature": 0}, ["scheme gkd: temperature must be > 0"]),
    ({"prompt_tokens": 8, "max_new_tokens": 12},
     ["prompts of up to 8 tokens + max_new_tokens 12 exceed the data's context of 16 tokens", "lower"]),
    ({"prompt_tokens": None, "max_new_tokens": 16},  # windows: a prompt is the first token
     ["prompts of up to 1 tokens + max_new_tokens 16 exceed the data's context of 16 tokens"]),
])
def test_gkd_settings_mistakes_are_one_line(tmp_path, capsys, plays, teacher_run, args, fragments):
    recipe = gkd_recipe(plays, teacher_run, **args)
    user_error(capsys, ["distill", write_recipe(tmp_path, recipe), "--run-dir", tmp_path / "bad"], *fragments)
    assert not any((tmp_path / "bad").rglob("*.safetensors"))  # refused before anything trained


def seq_recipe(plays, teacher_run, sequences, **args):
    recipe = distill_recipe(plays, teacher_run)
    recipe["scheme"] = {"name": "seq_kd", "args": {"sequences": str(sequences), "prompt_tokens": 4,
                                                   "max_new_tokens": CONTEXT - 4, **args}}
    return recipe


@pytest.fixture(scope="module")
def sequences(tmp_path_factory, plays, teacher_run, lm_cache):
    """`potstill generate` once: the teacher continues each training window's first 4 tokens by 12."""
    from potstill.cli.main import main

    folder = tmp_path_factory.mktemp("seq")
    recipe = write_recipe(folder, seq_recipe(plays, teacher_run, folder / "sequences"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POTSTILL_CACHE_DIR", str(lm_cache))
        assert main(["generate", str(recipe), "--quiet"]) == 0
    return folder / "sequences"


def test_generate_writes_fingerprinted_teacher_sequences(sequences, teacher_run):
    manifest = json.loads((sequences / "manifest.json").read_text())
    assert manifest["rows"] > 100 and manifest["settings"] == {
        "prompt_tokens": 4, "max_new_tokens": CONTEXT - 4, "temperature": 0.0, "top_p": 1.0, "seed": 0}
    tensors, header = load_tensors(sequences / "shard_00000.safetensors")
    assert header["fingerprint"] == manifest["fingerprint"] and header["rows"] == [0, manifest["rows"]]
    assert tensors["sequences"].shape == (manifest["rows"], CONTEXT)
    new = tensors["new_tokens"].bool()
    assert not new[:, :4].any() and new[:, 4].all()  # the prompt is the data's, then the teacher writes
    assert int(tensors["sequences"].max()) < VOCABULARY
    assert sorted(path.name for path in sequences.iterdir()) == ["manifest.json", "shard_00000.safetensors"]


def test_generate_again_writes_nothing(tmp_path, capsys, plays, teacher_run, sequences):
    copy = tmp_path / "sequences"
    shutil.copytree(sequences, copy)
    before = (copy / "shard_00000.safetensors").stat().st_mtime_ns
    code, out, err = cli(capsys, "generate", write_recipe(tmp_path, seq_recipe(plays, teacher_run, copy)))
    assert code == 0, err
    assert "(0 of 1 shards written now, the rest already there)" in out
    assert (copy / "shard_00000.safetensors").stat().st_mtime_ns == before


def test_seq_kd_distils_from_the_generated_sequences(tmp_path, capsys, plays, teacher_run, sequences):
    summary, _ = distill(tmp_path, capsys, seq_recipe(plays, teacher_run, sequences))
    rows = rows_of(summary)
    assert list(rows) == ["teacher", "baseline", "student"]
    assert rows["student"]["test_ppl"] > 1 and "perplexity_change_pct" in summary
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {name for r in records if r["stage"] == "student" for name in r["terms"]} == {"ce", "forward_kl"}


def changed_teacher(tmp_path, teacher_run):
    """A copy of the teacher run whose weights differ in one number."""
    copy = tmp_path / "teacher2"
    shutil.copytree(teacher_run, copy)
    path = copy / "teacher" / "model.safetensors"
    tensors, header = load_tensors(path)
    name = min(name for name, tensor in tensors.items() if tensor.is_floating_point())
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 0.01
    save_tensors(path, tensors, header)
    return copy


def test_seq_kd_refuses_sequences_written_by_another_teacher(tmp_path, capsys, plays, teacher_run, sequences):
    recipe = seq_recipe(plays, changed_teacher(tmp_path, teacher_run), sequences)
    user_error(capsys, ["distill", write_recipe(tmp_path, recipe), "--run-dir", tmp_path / "bad"],
               "another teacher", str(sequences), "potstill generate")


def test_generate_refuses_to_add_to_sequences_of_another_teacher(tmp_path, capsys, plays, teacher_run, sequences):
    copy = tmp_path / "sequences"
    shutil.copytree(sequences, copy)
    recipe = seq_recipe(plays, changed_teacher(tmp_path, teacher_run), copy)
    user_error(capsys, ["generate", write_recipe(tmp_path, recipe)], "another teacher", "--out")


def test_seq_kd_refuses_other_generation_settings(tmp_path, capsys, plays, teacher_run, sequences):
    recipe = seq_recipe(plays, teacher_run, sequences, temperature=0.7)
    user_error(capsys, ["distill", write_recipe(tmp_path, recipe), "--run-dir", tmp_path / "bad"],
               "other generation settings")


def test_seq_kd_refuses_a_folder_with_a_missing_shard(tmp_path, capsys, plays, teacher_run, sequences):
    copy = tmp_path / "sequences"
    shutil.copytree(sequences, copy)
    (copy / "shard_00000.safetensors").unlink()
    recipe = seq_recipe(plays, teacher_run, copy)
    user_error(capsys, ["distill", write_recipe(tmp_path, recipe), "--run-dir", tmp_path / "bad"],
               "shard_00000.safetensors is missing", "potstill generate")


def test_seq_kd_without_sequences_says_to_generate(tmp_path, capsys, plays, teacher_run):
    recipe = seq_recipe(plays, teacher_run, tmp_path / "none")
    user_error(capsys, ["distill", write_recipe(tmp_path, recipe), "--run-dir", tmp_path / "bad"],
               "no teacher sequences", "potstill generate RECIPE")


def test_generate_needs_scheme_seq_kd(tmp_path, capsys, plays, teacher_run):
    user_error(capsys, ["generate", write_recipe(tmp_path, distill_recipe(plays, teacher_run))],
               "scheme seq_kd", "'offline'")


def test_seq_kd_runs_with_sequences_shorter_than_the_context(tmp_path, capsys, plays, teacher_run):
    recipe = seq_recipe(plays, teacher_run, tmp_path / "short", max_new_tokens=8)
    recipe["train"]["epochs"] = 1
    recipe["distill"]["baseline"] = False
    assert cli(capsys, "generate", write_recipe(tmp_path, recipe), "-q")[0] == 0
    summary, _ = distill(tmp_path, capsys, recipe)
    assert rows_of(summary)["student"]["test_ppl"] > 1


@pytest.mark.parametrize("batch_size", [0, -1])
def test_generate_refuses_a_batch_size_below_1(tmp_path, capsys, plays, teacher_run, batch_size):
    recipe = seq_recipe(plays, teacher_run, tmp_path / "sequences", batch_size=batch_size)
    user_error(capsys, ["generate", write_recipe(tmp_path, recipe)], "batch_size")


def test_an_untrained_teacher_is_refused(tmp_path, capsys, plays, teacher_run):
    """Catches: a language model judged by top-1 against the majority class (a fresh model passes
    that on some data), or the check skipped for language models."""
    fresh = create_model("hf_lm_config", input_shape=(CONTEXT,), num_classes=VOCABULARY, seed=1,
                         layers=1, hidden=32, heads=2)
    save_tensors(tmp_path / "fresh.safetensors", fresh.state_dict(), {})
    recipe = distill_recipe(plays, tmp_path / "fresh.safetensors")
    recipe["distill"]["baseline"] = False
    message = user_error(capsys, ["distill", write_recipe(tmp_path, recipe), "--run-dir", tmp_path / "bad"],
                         "no better than token frequencies alone", "teacher_check: warn")
    perplexity = float(message.split("test perplexity of ")[1].split(",")[0])
    assert perplexity == pytest.approx(VOCABULARY, rel=0.2)  # uniform over 300 tokens, about
    assert not (tmp_path / "bad" / "student" / "model.safetensors").exists()


def test_an_untrained_teacher_with_teacher_check_warn_is_distilled_from(tmp_path, capsys, plays):
    fresh = create_model("hf_lm_config", input_shape=(CONTEXT,), num_classes=VOCABULARY, seed=1,
                         layers=1, hidden=32, heads=2)
    save_tensors(tmp_path / "fresh.safetensors", fresh.state_dict(), {})
    recipe = distill_recipe(plays, tmp_path / "fresh.safetensors")
    recipe["distill"].update(baseline=False, teacher_check="warn")
    recipe["train"]["epochs"] = 1
    recipe["data"]["train_size"] = 32
    code, out, err = cli(capsys, "distill", write_recipe(tmp_path, recipe), "--run-dir", tmp_path / "warned")
    assert code == 0, err
    assert "WARNING: the teacher has a test perplexity of" in out + err and "no better than token frequencies" in out + err
    assert torch.isfinite(torch.tensor(rows_of(summary_of(tmp_path / "warned"))["student"]["test_ppl"]))


def test_a_top_k_cache_reaches_the_token_loss_as_k_tokens_and_a_tail_bucket(tmp_path, capsys, plays, teacher_run, monkeypatch):
    """Catches: the cache's sparse teacher lost on the way (the loss would see only the decoded dense
    logits with a flattened tail), or a cache whose bytes per token are not what `cache info` says."""
    from potstill.knowledge.token import common

    calls = []
    real = common.bucketed
    monkeypatch.setattr(common, "bucketed", lambda top_k, *rest: calls.append(top_k[0].shape[-1]) or real(top_k, *rest))
    recipe = distill_recipe(plays, teacher_run)
    recipe["distill"]["cache"] = {"enabled": True, "top_k": 4, "path": str(tmp_path / "cache")}
    path = write_recipe(tmp_path, recipe, "topk.yaml")
    code, out, err = cli(capsys, "cache", "build", path)
    assert code == 0, err
    assert "per token        16 B (top 4 of 300 tokens, 16 positions per row)" in out  # 4 x (2 B fp16 + 2 B int16)
    code, _, err = cli(capsys, "distill", path, "--run-dir", tmp_path / "run", "--quiet")
    assert code == 0, err
    assert calls and set(calls) == {4}
