"""Teacher sequences for seq-KD (sequences.py) with a tiny random GPT and 3-row shards: a killed
`generate` resumes at the missing shard and writes the same bits, files from another teacher or
other settings are refused by name, and the rows read back learn the generated tokens only."""

from __future__ import annotations

import json
import re

import pytest
import torch

from potstill import sequences
from potstill.engine.checkpoint import load_tensors
from potstill.errors import PotstillError
from potstill.models import create_model
from potstill.positions import IGNORE_INDEX
from potstill.sequences import Settings, expected_manifest, model_digest, read_sequences, write_sequences

X = IGNORE_INDEX
VOCABULARY, NEW = 20, 5


@pytest.fixture
def teacher():
    return create_model("hf_lm_config", input_shape=(12,), num_classes=VOCABULARY, seed=0, layers=1, hidden=16, heads=2)


@pytest.fixture
def prompts():
    ids = torch.randint(1, VOCABULARY, (7, 4), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[2, 3] = 0  # row 2: a 3-token prompt, right-padded
    ids[2, 3] = 0
    return ids, mask


SETTINGS = Settings(prompt_tokens=None, max_new_tokens=NEW, temperature=1.0, top_p=1.0, seed=3)


def write(teacher, prompts, folder, settings=SETTINGS):
    ids, mask = prompts
    manifest = expected_manifest(teacher, ids, mask, "tok", settings)
    said = []
    count = write_sequences(teacher, ids, mask, folder, manifest, settings, pad=0, eos=None, batch_size=2, say=said.append)
    return count, manifest, said


@pytest.fixture(autouse=True)
def small_shards(monkeypatch):
    monkeypatch.setattr(sequences, "SHARD", 3)  # 7 rows: shards of 3, 3 and 1


def shard_bytes(folder):
    """Each shard's tensors (as bytes) and header: safetensors orders its metadata keys freely, so
    the files' own bytes may differ where their content does not."""
    shards = {}
    for path in sorted(folder.glob("shard_*.safetensors")):
        tensors, header = load_tensors(path)
        shards[path.name] = ({name: value.numpy().tobytes() for name, value in sorted(tensors.items())}, header)
    return shards


def test_rows_read_back_learn_the_generated_tokens_only(teacher, prompts, tmp_path):
    count, manifest, said = write(teacher, prompts, tmp_path / "seq")
    assert count == 3 and said[-1] == "generate: shard 3/3 (7 of 7 rows)"
    ids, mask, targets = read_sequences(tmp_path / "seq", manifest, "fix")
    assert ids.shape == mask.shape == targets.shape == (7, 4 + NEW)
    prompt_ids, prompt_mask = prompts
    for row in range(7):
        length = int(prompt_mask[row].sum())
        assert torch.equal(ids[row, :length], prompt_ids[row, :length])  # right-aligned: the prompt from position 0
        assert mask[row].tolist() == [1] * (length + NEW) + [0] * (4 - length)
        assert (targets[row, : length - 1] == X).all()  # the prompt is not learned
        assert targets[row, length - 1 : length - 1 + NEW].tolist() == ids[row, length : length + NEW].tolist()
        assert (targets[row, length - 1 + NEW :] == X).all()
    assert int((targets != X).sum()) == 7 * NEW


def test_a_killed_generate_resumes_at_the_missing_shard_with_the_same_bits(teacher, prompts, tmp_path):
    """Catches: one generator for the whole run (a resumed shard would draw other samples), or every
    shard regenerated on a second run."""
    folder = tmp_path / "seq"
    write(teacher, prompts, folder)
    before = shard_bytes(folder)
    assert write(teacher, prompts, folder)[0] == 0
    (folder / "shard_00001.safetensors").unlink()
    count, _, said = write(teacher, prompts, folder)
    assert count == 1 and said == ["generate: shard 2/3 (6 of 7 rows)"]
    assert shard_bytes(folder) == before


def test_a_shard_of_another_manifest_is_rewritten_or_refused(teacher, prompts, tmp_path):
    write(teacher, prompts, tmp_path / "a")
    other = Settings(prompt_tokens=None, max_new_tokens=NEW, temperature=1.0, top_p=1.0, seed=4)
    _, manifest, _ = write(teacher, prompts, tmp_path / "b", other)
    (tmp_path / "b" / "shard_00000.safetensors").write_bytes((tmp_path / "a" / "shard_00000.safetensors").read_bytes())
    with pytest.raises(PotstillError, match="shard_00000.safetensors is missing or was not written for this manifest; fix"):
        read_sequences(tmp_path / "b", manifest, "fix")
    assert write(teacher, prompts, tmp_path / "b", other)[0] == 1  # the foreign shard is made anew


@pytest.mark.parametrize("change, words", [
    ("teacher", "another teacher (its weights differ)"),
    ("prompts", "other prompts"),
    ("settings", "other generation settings"),
])
def test_sequences_of_another_teacher_prompts_or_settings_are_refused(teacher, prompts, tmp_path, change, words):
    write(teacher, prompts, tmp_path / "seq")
    ids, mask = prompts
    settings = SETTINGS
    if change == "teacher":
        with torch.no_grad():
            next(teacher.parameters()).view(-1)[0] += 1e-3
    elif change == "prompts":
        ids = ids.clone()
        ids[0, 0] = (ids[0, 0] + 1) % VOCABULARY
    else:
        settings = Settings(prompt_tokens=None, max_new_tokens=NEW, temperature=0.5, top_p=1.0, seed=3)
    manifest = expected_manifest(teacher, ids, mask, "tok", settings)
    with pytest.raises(PotstillError, match=f"were written from {re.escape(words)}.*; regenerate"):
        read_sequences(tmp_path / "seq", manifest, "regenerate")
    with pytest.raises(PotstillError, match=re.escape(words)):
        write_sequences(teacher, ids, mask, tmp_path / "seq", manifest, settings, 0, None, 2, print)


def test_model_digest_follows_the_weights_only(teacher):
    twin = create_model("hf_lm_config", input_shape=(12,), num_classes=VOCABULARY, seed=0, layers=1, hidden=16, heads=2)
    assert model_digest(twin) == model_digest(teacher)
    with torch.no_grad():
        twin.lm_head.weight[0, 0] += 1e-6
    assert model_digest(twin) != model_digest(teacher)


def test_a_damaged_manifest_is_named(teacher, prompts, tmp_path):
    _, manifest, _ = write(teacher, prompts, tmp_path / "seq")
    (tmp_path / "seq" / "manifest.json").write_text("{not json")
    with pytest.raises(PotstillError, match="manifest.json is unreadable.*; fix"):
        read_sequences(tmp_path / "seq", manifest, "fix")
    assert json.loads(json.dumps(manifest))["rows"] == 7
