"""Building, checking and reading a teacher cache: outputs match the teacher on the replayed view,
anything changed is named, damage is found, and a killed build resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from potstill.cache import TeacherCache, build
from potstill.engine.checkpoint import save_tensors
from potstill.errors import PotstillError
from tests.cache.helpers import job, nudge, setup
from tests.conftest import tiny_recipe, write_recipe


@pytest.fixture
def built(tmp_path):
    recipe, bench, teacher = setup()
    cache_job = job(tmp_path / "cache", recipe, bench, teacher)
    manifest = build(cache_job)
    return cache_job, manifest, bench


def test_cached_outputs_are_the_teachers_outputs_on_the_replayed_views(built):
    cache_job, manifest, bench = built
    cache = TeacherCache(cache_job.folder, fingerprint=cache_job.fingerprint)
    assert cache.views.shape == (320, 3, 3) and len(manifest["shards"]) == 3  # 400 samples, 20% test, 150 per shard
    loader = bench.train_loader(seed=5, views=cache.views)
    for epoch in range(2):
        for batch in loader.batches(epoch):
            with torch.inference_mode():
                live = cache_job.teacher.eval()(batch["input"])
            logits, features = cache.outputs(batch["index"], batch["view"])
            assert features == {} and logits.dtype == torch.float32
            assert torch.allclose(logits, live, atol=2e-3, rtol=2e-3)  # float16 storage
    assert manifest["bytes"]["per_sample_view"] == {"logits": 2 * 10, "features": 0, "view": 3}


def test_every_view_is_used_and_an_epochs_choice_is_seeded(built):
    cache_job, _, bench = built
    cache = TeacherCache(cache_job.folder)
    loader = bench.train_loader(seed=1, views=cache.views)
    chosen = torch.cat([b["view"] for b in loader.batches(0)])
    assert set(chosen.tolist()) == {0, 1, 2}
    assert torch.equal(chosen, torch.cat([b["view"] for b in loader.batches(0)]))
    assert not torch.equal(chosen, torch.cat([b["view"] for b in loader.batches(1)]))


def test_memory_mapped_reads_equal_in_memory_reads(built):
    cache_job, _, _ = built
    memory, mapped = TeacherCache(cache_job.folder, load="memory"), TeacherCache(cache_job.folder, load="mmap")
    assert mapped.mmap and not memory.mmap
    index, view = torch.tensor([0, 149, 150, 319, 151, 3]), torch.tensor([2, 0, 1, 2, 0, 1])
    assert torch.equal(memory.outputs(index, view)[0], mapped.outputs(index, view)[0])


def test_top_k_cache_and_cached_teacher_features(tmp_path):
    recipe, bench, teacher = setup()
    cache_job = job(tmp_path / "c", recipe, bench, teacher, taps=["block1"], top_k=3)
    manifest = build(cache_job)
    assert manifest["bytes"]["per_sample_view"]["logits"] == 3 * 2 + 3 * 1 + 2  # fp16 values, uint8 indices, fp16 fill
    cache = TeacherCache(cache_job.folder)
    batch = next(bench.train_loader(0, views=cache.views).batches(0))
    logits, features = cache.outputs(batch["index"], batch["view"])
    with torch.inference_mode():
        live = teacher.eval()(batch["input"])
    assert torch.equal(logits.argmax(1), live.argmax(1))
    assert list(features) == ["block1"] and features["block1"].shape[1:] == (8, 4, 4)


@pytest.mark.parametrize(("change", "named"), [
    (lambda recipe, teacher: nudge(teacher), "the teacher: weights_sha256"),
    (lambda recipe, teacher: setattr(recipe.distill.cache, "views", 2), "the views: count 3 -> 2"),
    (lambda recipe, teacher: setattr(recipe.distill.cache, "top_k", 4), "what is stored: top_k None -> 4"),
])
def test_a_cache_built_from_something_else_is_refused_by_name(built, change, named):
    cache_job, _, bench = built
    recipe, _, _ = setup()
    change(recipe, cache_job.teacher)
    other = job(cache_job.folder, recipe, bench, cache_job.teacher)
    with pytest.raises(PotstillError, match="built from something else") as error:
        TeacherCache(other.folder, fingerprint=other.fingerprint)
    assert named in str(error.value) and "--rebuild" in str(error.value)
    with pytest.raises(PotstillError, match=named):
        build(other)
    assert TeacherCache(cache_job.folder, fingerprint=cache_job.fingerprint)  # the old cache is untouched
    build(other, rebuild=True)
    assert TeacherCache(other.folder, fingerprint=other.fingerprint)


def test_different_training_data_is_named(built, tmp_path):
    cache_job, _, _ = built
    recipe, bench, _ = setup(data__train_size=200)
    other = job(cache_job.folder, recipe, bench, cache_job.teacher)
    with pytest.raises(PotstillError, match="the training data: content_sha256 .* samples 320 -> 200"):
        TeacherCache(other.folder, fingerprint=other.fingerprint)


def test_truncated_and_corrupted_shards_are_named_and_repaired(built):
    cache_job, _, _ = built
    folder = cache_job.folder
    good = {name: (folder / name).read_bytes() for name in ("shard-00000-0.npy", "shard-00002-0.npy")}
    data = good["shard-00000-0.npy"]
    (folder / "shard-00000-0.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(PotstillError, match="shard-00000-0.npy is truncated or altered"):
        TeacherCache(folder)
    corrupted = bytearray(good["shard-00002-0.npy"])
    corrupted[-1] ^= 0xFF
    (folder / "shard-00002-0.npy").write_bytes(bytes(corrupted))
    with pytest.raises(PotstillError, match="shard-00002-0.npy is corrupted") as error:
        TeacherCache(folder)
    assert "potstill cache build" in str(error.value)
    said = []
    repaired = build(cache_job, progress=said.append)
    assert any("shard-00000-0.npy is truncated or altered" in line and "rebuilding shard 0" in line for line in said)
    assert any("shard-00002-0.npy is corrupted" in line for line in said)
    assert repaired["build"]["shards_built"] == 2 and repaired["build"]["shards_kept"] == 1
    assert all((folder / name).read_bytes() == content for name, content in good.items())


class Killed(Exception):
    pass


def test_a_killed_build_keeps_finished_shards_and_resumes(tmp_path):
    recipe, bench, teacher = setup()
    cache_job = job(tmp_path / "c", recipe, bench, teacher)

    def kill_after_first(shard):
        raise Killed

    with pytest.raises(Killed):
        build(cache_job, on_shard=kill_after_first)
    assert not (cache_job.folder / "manifest.json").exists()
    with pytest.raises(PotstillError, match="no finished teacher cache"):
        TeacherCache(cache_job.folder)
    built_now = []
    manifest = build(cache_job, on_shard=built_now.append)
    assert built_now == [1, 2] and manifest["build"]["shards_kept"] == 1
    fresh = build(job(tmp_path / "fresh", recipe, bench, teacher))
    assert [s["files"] for s in manifest["shards"]] == [s["files"] | {} for s in fresh["shards"]]


def test_parallel_workers_write_the_same_bytes(tmp_path):
    recipe, bench, teacher = setup()
    one = build(job(tmp_path / "one", recipe, bench, teacher))
    two = build(job(tmp_path / "two", recipe, bench, teacher, workers=2))
    assert two["build"]["workers"] == 2
    sums = lambda m: [[f["sha256"] for f in s["files"].values()] for s in m["shards"]]
    assert sums(one) == sums(two)


def test_a_folder_with_other_files_is_never_written_to(tmp_path):
    recipe, bench, teacher = setup()
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(PotstillError, match="not a teacher cache folder .*notes.txt"):
        build(job(folder, recipe, bench, teacher), rebuild=True)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_top_k_must_leave_classes_out(tmp_path):
    recipe, bench, teacher = setup()
    with pytest.raises(PotstillError, match="top_k: 10 keeps all 10 classes; set top_k: null"):
        build(job(tmp_path / "c", recipe, bench, teacher, top_k=10))


def test_a_damaged_manifest_is_reported(built):
    cache_job, _, _ = built
    (cache_job.folder / "manifest.json").write_text("{not json")
    with pytest.raises(PotstillError, match="no finished teacher cache"):
        TeacherCache(cache_job.folder)
    assert json.loads((cache_job.folder / "plan.json").read_text())["layout"]["views"] == 3
    assert build(cache_job)["build"]["shards_built"] == 0  # shards intact: only the manifest is rewritten
    assert TeacherCache(cache_job.folder, fingerprint=cache_job.fingerprint).views.shape[1] == 3
    assert np.load(cache_job.folder / "views.npy").shape == (320, 3, 3)


def test_a_build_killed_with_sigkill_resumes_from_its_finished_shards(tmp_path):
    """SIGKILL `potstill cache build` after its first shard, build again, compare with a clean build."""
    teacher = tmp_path / "teacher.safetensors"
    save_tensors(teacher, setup()[2].state_dict(), {})
    recipe = tiny_recipe(teacher__checkpoint=str(teacher), data__args={"num_samples": 6000},
                         data__crop_padding=1, distill__cache={"enabled": True, "views": 4, "shard_size": 16})
    path = write_recipe(tmp_path, recipe)
    command = [sys.executable, "-m", "potstill.cli.main", "cache", "build", str(path), "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(command + ["--out", str(tmp_path / "whole")], check=True, env=env)

    process = subprocess.Popen(command + ["--out", str(tmp_path / "cut")], env=env)
    first = tmp_path / "cut" / "shard-00000.json"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and not (tmp_path / "cut" / "manifest.json").exists()
    subprocess.run(command + ["--out", str(tmp_path / "cut")], check=True, env=env)
    whole, cut = (json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("whole", "cut"))
    assert 1 <= cut["build"]["shards_kept"] < len(cut["shards"])
    assert [s["files"] for s in whole["shards"]] == [s["files"] for s in cut["shards"]]  # same bytes
