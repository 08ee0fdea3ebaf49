"""The cache never serves outputs that are not this teacher's on this data (issue 11, item 1).

A shard is used only when the manifest that fingerprints this teacher + data + views lists it
with its checksum; anything else is rebuilt or refused. Each test names the planted bug it catches.
"""

import json
import shutil

import numpy as np
import pytest
import torch

from potstill.cache import TeacherCache, build
from potstill.cli.main import main
from potstill.engine.checkpoint import save_tensors
from potstill.engine.lock import FolderLock
from potstill.errors import PotstillError
from tests.cache.helpers import job, nudge, setup
from tests.conftest import tiny_recipe, write_recipe


def snapshot(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file() and path.name != ".lock"}


def shard_logits(folder, shard=0):
    return np.load(folder / f"shard-{shard:05d}-0.npy")


def test_shards_without_manifest_or_plan_are_foreign_and_refused(tmp_path):
    """Catches: deleting manifest.json and plan.json made the next build reuse the old shards for
    another teacher and stamp them with its fingerprint (the reported silent wrong result)."""
    recipe, bench, teacher = setup()
    build(job(tmp_path / "cache", recipe, bench, teacher))
    for name in ("manifest.json", "plan.json"):
        (tmp_path / "cache" / name).unlink()
    before = snapshot(tmp_path / "cache")
    nudge(teacher)
    for other in (teacher, setup()[2]):  # another teacher, and even the same one: nothing vouches for the shards
        with pytest.raises(PotstillError, match="shards but no readable manifest.json or plan.json.*--rebuild"):
            build(job(tmp_path / "cache", recipe, bench, other))
    assert snapshot(tmp_path / "cache") == before  # refused, nothing written
    rebuilt = build(job(tmp_path / "cache", recipe, bench, teacher), rebuild=True)
    assert rebuilt["build"]["shards_built"] == 3


def test_a_shard_copied_from_another_cache_is_rebuilt_not_used(tmp_path):
    """Catches: a build that trusts each shard's own record (its checksums match its own files)
    instead of asking whether the shard was computed for this plan."""
    recipe, bench, teacher = setup()
    mine = job(tmp_path / "mine", recipe, bench, teacher)
    build(mine)
    expected = shard_logits(mine.folder)
    other = setup()[2]
    nudge(other)
    build(job(tmp_path / "other", recipe, bench, other))
    assert not np.array_equal(shard_logits(tmp_path / "other"), expected)
    for path in (tmp_path / "other").glob("shard-00000*"):
        shutil.copy(path, mine.folder / path.name)
    messages = []
    manifest = build(mine, progress=messages.append)
    assert manifest["build"]["shards_built"] == 1
    assert any("shard-00000 was computed for another teacher" in m for m in messages)
    assert np.array_equal(shard_logits(mine.folder), expected)


def test_the_reader_uses_only_files_whose_bytes_the_manifest_vouches_for(tmp_path):
    """Catches: opening the cache without verifying (distill passed verify=False) and reading
    whatever file sits under a shard's name."""
    recipe, bench, teacher = setup()
    mine = job(tmp_path / "mine", recipe, bench, teacher)
    build(mine)
    other = setup()[2]
    nudge(other)
    build(job(tmp_path / "other", recipe, bench, other))
    for path in (tmp_path / "other").glob("shard-00001*"):
        shutil.copy(path, mine.folder / path.name)
    for load in ("memory", "mmap"):
        with pytest.raises(PotstillError, match="is damaged: shard-00001-0.npy is corrupted"):
            TeacherCache(mine.folder, load=load, fingerprint=mine.fingerprint)
    build(mine)  # the build names and repairs it
    cache = TeacherCache(mine.folder, fingerprint=mine.fingerprint)
    logits, _ = cache.outputs(torch.arange(150, 160), torch.zeros(10, dtype=torch.long))
    assert torch.equal(logits, torch.from_numpy(shard_logits(mine.folder, 1)[:10, 0]).float())


def test_a_manifest_that_does_not_tile_the_samples_is_refused(tmp_path):
    """Catches: a manifest whose shard list lost an entry (or was edited) serving rows from the
    wrong shard; the reader checks shard ranges and fields against the layout."""
    recipe, bench, teacher = setup()
    mine = job(tmp_path / "c", recipe, bench, teacher)
    manifest = build(mine)
    manifest["shards"] = manifest["shards"][1:]
    (mine.folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PotstillError, match="does not describe a complete cache"):
        TeacherCache(mine.folder, fingerprint=mine.fingerprint)


def test_a_damaged_view_bank_is_named_and_repaired(tmp_path):
    """Catches: leaving views.npy out of verification, which would pair cached logits with the
    wrong augmentation (issue 13, item 3)."""
    recipe, bench, teacher = setup()
    mine = job(tmp_path / "c", recipe, bench, teacher)
    build(mine)
    bank = mine.folder / "views.npy"
    good = bank.read_bytes()
    damaged = bytearray(good)
    damaged[-1] ^= 1
    bank.write_bytes(bytes(damaged))
    with pytest.raises(PotstillError, match="views.npy is corrupted"):
        TeacherCache(mine.folder, fingerprint=mine.fingerprint)
    assert main(["cache", "info", str(mine.folder), "--quiet"]) == 2
    messages = []
    build(mine, progress=messages.append)
    assert any("views.npy is damaged" in m for m in messages)
    assert bank.read_bytes() == good
    assert TeacherCache(mine.folder, fingerprint=mine.fingerprint).views.shape == (320, 3, 3)


def test_a_second_build_of_a_locked_cache_folder_is_refused_with_the_holders_pid(tmp_path):
    """Catches: two processes writing one cache folder at once (no lock)."""
    recipe, bench, teacher = setup()
    mine = job(tmp_path / "c", recipe, bench, teacher)
    mine.folder.mkdir()
    with FolderLock(mine.folder, "teacher cache"):
        # a lock taken through another open file description conflicts, as another process's would
        with pytest.raises(PotstillError, match=r"teacher cache .* is in use by another potstill process \(pid \d+\)"):
            build(mine)
    assert build(mine)["build"]["shards_built"] == 3  # released: a lock file left behind does not block


def test_distill_refuses_a_cache_folder_whose_manifest_was_deleted(tmp_path, capsys):
    """End to end, the reported case: delete manifest.json and plan.json, distil with another
    teacher: one error line naming --rebuild, the shards untouched, no manifest written."""
    teacher_file = tmp_path / "teacher.safetensors"
    _, _, model = setup()
    save_tensors(teacher_file, model.state_dict(), {})
    cached = {"distill__cache__enabled": True, "distill__cache__path": str(tmp_path / "cache"),
              "teacher__checkpoint": str(teacher_file)}
    path = write_recipe(tmp_path, tiny_recipe(**cached))
    assert main(["cache", "build", str(path), "--quiet"]) == 0
    for name in ("manifest.json", "plan.json"):
        (tmp_path / "cache" / name).unlink()
    before = snapshot(tmp_path / "cache")
    nudge(model)
    save_tensors(teacher_file, model.state_dict(), {})
    capsys.readouterr()
    assert main(["distill", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no readable manifest.json or plan.json" in err and "--rebuild" in err
    assert snapshot(tmp_path / "cache") == before
