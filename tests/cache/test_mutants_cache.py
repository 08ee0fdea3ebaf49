"""Tests added for mutants that survived `mutmut run "potstill.cache*"` (issue 13, docs/testing.md).

Each docstring names the mutant(s) it kills (mutmut 3.8 names, as at commit 2155e84); every one was
checked by planting the mutant (MUTANT_UNDER_TEST in mutmut's copy) and seeing the test fail.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from potstill.cache import TeacherCache, build, codec, reader
from potstill.cache.fingerprint import differences, short
from potstill.cache.reader import check_cache, raise_damaged
from potstill.cache.store import DamagedCache, file_entry, load_array, problem, shard_problems
from potstill.errors import PotstillError
from tests.cache.helpers import job, setup

HEX_A, HEX_B = "3f2a9c1b" + "a" * 56, "9b1c04d2" + "b" * 56  # 64 characters: a SHA-256 in hex


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One cache (320 samples, 3 views, 3 shards of up to 150), built once for the tests that only read it."""
    recipe, bench, teacher = setup()
    cache_job = job(tmp_path_factory.mktemp("built") / "cache", recipe, bench, teacher)
    return cache_job, build(cache_job)


def test_index_dtype_is_the_smallest_type_that_holds_every_class_index():
    """Kills codec.x_index_dtype__mutmut_3 (`<= 256` -> `< 256`), _4 (`<= 257`: class index 256
    would wrap around in uint8), _6 (int16 for any K above 256), _7 (`< 32_768`) and _8
    (`<= 32769`: index 32768 overflows int16). The old test checked K = 10 and K = 300 only."""
    assert codec.index_dtype(256) == torch.uint8  # indices 0..255
    assert codec.index_dtype(257) == torch.int16
    assert codec.index_dtype(32_768) == torch.int16  # indices 0..32767
    assert codec.index_dtype(32_769) == torch.int32
    assert codec.index_dtype(100_000) == torch.int32
    for classes in (256, 257, 32_768, 32_769):  # the largest index survives the round trip
        logits = torch.zeros(1, classes)
        logits[0, -1] = 5.0
        fields = codec.encode(logits, 1, torch.float32)
        assert fields["indices"].long().item() == classes - 1
        assert codec.decode(fields, classes).argmax().item() == classes - 1


def test_a_sha256_in_a_difference_is_cut_to_ten_characters_and_an_ellipsis():
    """Kills fingerprint.x_short__mutmut_3 (never shortened), _6 (11 characters kept), _7
    ("XX…XX"), _9 (every string but a 64-character one shortened), _10 (65 instead of 64)."""
    assert short(HEX_A) == "3f2a9c1baa…"
    assert short("x" * 63) == "x" * 63 and short("x" * 65) == "x" * 65 and short(64) == "64"
    found = differences({"teacher": {"weights_sha256": HEX_A}}, {"teacher": {"weights_sha256": HEX_B}})
    assert found == ["the teacher: weights_sha256 3f2a9c1baa… -> 9b1c04d2bb…"]


def test_a_shard_of_another_plan_is_named_by_its_own_number():
    """Kills store.x_shard_problems__mutmut_5, _9, _10 (the record's number read from a wrong
    key, so the default 0 is printed): the old test copied shard 0, where the default agrees."""
    record = {"shard": 1, "start": 150, "end": 300, "plan": "other", "files": {}}
    assert shard_problems(None, record, "mine") == ["shard-00001 was computed for another teacher, data or layout"]


def test_a_shard_record_without_a_number_still_gets_a_message():
    """Kills store.x_shard_problems__mutmut_6 and _8 (default None or none: `None:05d` raises
    TypeError, so a hand-edited record crashes the build instead of being rebuilt) and _11 (default
    1). Pins today's default, shard-00000 (see docs/testing.md: the caller knows the real number)."""
    assert shard_problems(None, {"plan": "other"}, "mine") == ["shard-00000 was computed for another teacher, data or layout"]


@pytest.mark.parametrize(("record", "message"), [
    ({"shard": 2, "plan": "mine", "files": ["shard-00002-0.npy"]}, "shard-00002.json is damaged"),
    ({"shard": 2, "plan": "mine"}, "shard-00002.json is damaged"),
    ({"plan": "mine", "files": None}, "shard-00000.json is damaged"),
])
def test_a_shard_record_whose_file_list_is_not_a_mapping_is_damaged(record, message):
    """Kills store.x_shard_problems__mutmut_17, _21, _22 (number read from a wrong key), _18, _19,
    _20 (`None:05d`: TypeError) and _23 (default 1): no test had a record of this plan whose
    `files` was not a dict."""
    assert shard_problems(None, record, "mine") == [message]


def test_describe_names_the_folder_and_what_the_cache_holds(built, tmp_path):
    """Kills reader.xǁTeacherCacheǁdescribe__mutmut_2, _3, _17, _18, _23, _24 (the "path",
    "fields" or "build" key renamed), _4 (the path given as "None"), _25, _29, _30 (the build
    statistics read from a wrong key) and _26, _28 (no `{}` default: a manifest without build
    statistics describes them as None), _33 .. _38 (the "load" value wrong or constant):
    `potstill cache info` and the run log print these keys."""
    cache_job, manifest = built
    info = TeacherCache(cache_job.folder, load="memory").describe()
    assert info == {"path": str(cache_job.folder), "samples": 320, "views": 3, "fields": ["logits"],
                    "bytes": manifest["bytes"], "build": manifest["build"], "load": "memory"}
    copy = shutil.copytree(cache_job.folder, tmp_path / "copy")
    (copy / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "build"}))
    described = TeacherCache(copy, load="mmap").describe()
    assert described["build"] == {} and described["load"] == "mmap"


def test_a_missing_recorded_file_is_named(tmp_path):
    """Kills store.x_problem__mutmut_6 and _7 (the entry's name read from a wrong key: KeyError
    instead of "... is missing")."""
    entry = {"name": "shard-00000-0.npy", "bytes": 10, "sha256": "0" * 64}
    assert problem(tmp_path, entry) == "shard-00000-0.npy is missing"


def test_a_manifest_that_is_not_this_plans_is_rewritten_even_when_every_shard_is_intact(built, tmp_path):
    """Kills build.x_up_to_date__mutmut_5 (a manifest whose plan keys differ counted as up to
    date): the manifest lost its "format" (nothing else differs, so the folder is not refused),
    and the build must write this plan's manifest again rather than keep the old one."""
    cache_job, manifest = built
    copy = shutil.copytree(cache_job.folder, tmp_path / "copy")
    (copy / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "format"}))
    cache_job = job(copy, *setup())
    rewritten = build(cache_job)
    assert rewritten["format"] == manifest["format"] and rewritten["build"]["shards_built"] == 0
    assert json.loads((copy / "manifest.json").read_text())["format"] == manifest["format"]


def test_a_manifest_with_a_wrong_view_bank_record_is_rewritten(built, tmp_path):
    """Kills build.x_up_to_date__mutmut_14 (`and` -> `or`: a manifest whose shard list matches is
    kept although its view-bank record does not match views.npy, so every later read fails)."""
    cache_job, manifest = built
    copy = shutil.copytree(cache_job.folder, tmp_path / "copy")
    edited = manifest | {"view_bank": manifest["view_bank"] | {"sha256": "0" * 64}}
    (copy / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(PotstillError, match="views.npy is corrupted"):
        TeacherCache(copy)
    build(job(copy, *setup()))
    assert TeacherCache(copy).views.shape == (320, 3, 3)


def test_a_manifest_without_a_fingerprint_is_a_cache_built_from_something_else(built, tmp_path):
    """Kills build.x_plan_changes__mutmut_7 and _9 (no `{}` default for a record's fingerprint:
    a hand-edited manifest without one crashed the build with AttributeError instead of a refusal)."""
    cache_job, manifest = built
    copy = shutil.copytree(cache_job.folder, tmp_path / "copy")
    (copy / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "fingerprint"}))
    with pytest.raises(PotstillError, match="built from something else: the cache format of this potstill version: None -> 2"):
        build(job(copy, *setup()))


def test_a_changed_layout_names_only_what_changed(built):
    """Kills build.x_plan_changes__mutmut_16, _17, _21, _22 (the recorded layout ignored, so
    every layout key was listed as changed from None), _27, _28 (the "layout: " label), _31 (the
    old value printed as None), _32, _33 (which keys count as changed): another shard size is
    named alone."""
    cache_job, _ = built
    with pytest.raises(PotstillError, match="built from something else: layout: shard_size 150 -> 100; rebuild it"):
        build(job(cache_job.folder, *setup(), shard_size=100))


def test_a_record_whose_layout_is_not_a_mapping_is_refused_with_every_key_named(built, tmp_path):
    """Kills build.x_plan_changes__mutmut_23 (`not isinstance` -> `isinstance`), _24 (a
    non-mapping layout replaced by None: AttributeError instead of a refusal) and _30 (the
    separator between changed keys)."""
    cache_job, manifest = built
    copy = shutil.copytree(cache_job.folder, tmp_path / "copy")
    (copy / "manifest.json").write_text(json.dumps(manifest | {"layout": "damaged"}))
    with pytest.raises(PotstillError, match="built from something else: layout: num_samples None -> 320, views None -> 3"):
        build(job(copy, *setup()))


def test_memory_mapped_gather_equals_in_memory_gather_field_by_field(built, tmp_path):
    """Kills reader.xǁTeacherCacheǁgather__mutmut_14, _16 (the memory-mapped batch made float64:
    `outputs` hides it, the values convert exactly) and _17, _19 (shape or dtype read from shard 1,
    which a one-shard cache does not have: IndexError)."""
    cache_job, _ = built
    index, view = torch.tensor([0, 149, 150, 319, 151, 3]), torch.tensor([2, 0, 1, 2, 0, 1])
    for folder, rows in ((cache_job.folder, index), (None, index[index < 150])):
        if folder is None:  # the same data in one shard
            one = job(tmp_path / "one", *setup(), shard_size=400)
            build(one)
            folder = one.folder
        memory = TeacherCache(folder, load="memory").gather(rows, view[: len(rows)])
        mapped = TeacherCache(folder, load="mmap").gather(rows, view[: len(rows)])
        assert memory.keys() == mapped.keys() == {"logits"}
        assert mapped["logits"].dtype == memory["logits"].dtype == torch.float16
        assert torch.equal(mapped["logits"], memory["logits"])


@pytest.mark.parametrize(("count", "listed"), [
    (1, "a is bad"),
    (3, "a is bad; b is bad; c is bad"),
    (4, "a is bad; b is bad; c is bad ..."),
])
def test_a_damaged_cache_lists_the_first_three_problems(tmp_path, count, listed):
    """Kills reader.x_raise_damaged__mutmut_3 (the separator), _4 (four listed), _5 (" ..."
    never added), _6 (always added), _7 (" ..." changed), _8, _9 (`> 3` -> `>= 3`, `> 4`) and
    _10, _11, _12 (the rest of the message changed)."""
    with pytest.raises(PotstillError) as error:
        raise_damaged(tmp_path, [f"{name} is bad" for name in "abcd"[:count]])
    assert str(error.value) == (f"teacher cache {tmp_path} is damaged: {listed}; "
                                "run `potstill cache build RECIPE` to rebuild the damaged shards (intact ones are kept)")
    raise_damaged(tmp_path, [])  # nothing damaged: no error


def test_load_mmap_keeps_the_shards_memory_mapped(built):
    """Kills reader.xǁTeacherCacheǁread_files__mutmut_5 (`mmap` not passed on: every shard read
    into memory, which the outputs cannot show but a cache larger than memory can)."""
    cache_job, _ = built
    mapped = TeacherCache(cache_job.folder, load="mmap")
    assert all(isinstance(part, np.memmap) for part in mapped.arrays["logits"]) and len(mapped.arrays["logits"]) == 3
    assert not isinstance(mapped.views, np.memmap)  # the small view bank is read whole


def test_verify_false_reads_without_checksums_and_keeps_the_memory_map(built, tmp_path):
    """Kills reader.xǁTeacherCacheǁread_files__mutmut_9 (`verify` passed as `mmap`: with
    verify=False a memory-mapped cache was read into memory), _10 (`verify` not passed on:
    verify=False still hashed every file) and reader.xǁTeacherCacheǁ__init____mutmut_19, _20
    (the up-front check run with verify=True: every file hashed before it is read, and
    verify=False ignored)."""
    cache_job, _ = built
    copy = shutil.copytree(cache_job.folder, tmp_path / "copy")
    shard = copy / "shard-00001-0.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1  # same size, another SHA-256
    shard.write_bytes(bytes(data))
    with pytest.raises(PotstillError, match="shard-00001-0.npy is corrupted"):
        TeacherCache(copy, load="mmap")
    unchecked = TeacherCache(copy, load="mmap", verify=False)
    assert all(isinstance(part, np.memmap) for part in unchecked.arrays["logits"])


@pytest.mark.parametrize(("array", "holds"), [
    (np.zeros((149, 3, 10), np.float16), r"holds float16 \(149, 3, 10\), expected float16 \(150, 3, 10\)"),
    (np.zeros((150, 3, 10), np.float32), r"holds float32 \(150, 3, 10\), expected float16 \(150, 3, 10\)"),
])
def test_a_recorded_shard_of_the_wrong_shape_or_type_is_named(built, tmp_path, array, holds):
    """Kills reader.xǁTeacherCacheǁread_files__mutmut_13 (`or` -> `and`: a shard of the wrong
    shape but the right type was served, rows out of place), _17 (the message dropped) and _18,
    _19 (the file's name read from a wrong key: KeyError), _64 (the folder left out): the
    manifest vouches for the file's bytes, but not for what they hold."""
    cache_job, manifest = built
    copy = shutil.copytree(cache_job.folder, tmp_path / "copy")
    np.save(copy / "shard-00000-0.npy", array)
    manifest = json.loads(json.dumps(manifest))  # a copy: the fixture is shared
    manifest["shards"][0]["files"]["logits"] = file_entry(copy / "shard-00000-0.npy")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    for load in ("memory", "mmap"):
        with pytest.raises(PotstillError, match=f"teacher cache {copy} is damaged: shard-00000-0.npy " + holds):
            TeacherCache(copy, load=load)


@pytest.mark.parametrize("load", ["memory", "mmap"])
def test_the_opened_view_bank_does_not_follow_later_writes_to_its_file(built, tmp_path, load):
    """Kills reader.xǁTeacherCacheǁread_files__mutmut_36 (the view bank memory-mapped: the bank
    tensor then shares the file's read-only map, so a rewrite of views.npy in place, such as a
    concurrent `cache build` repairing it, changes the views of a running distillation; torch
    also warns, once per process, that the array is not writable)."""
    cache_job, _ = built
    copy = shutil.copytree(cache_job.folder, tmp_path / "copy")
    cache = TeacherCache(copy, load=load)
    before = cache.views.clone()
    bank = np.load(copy / "views.npy")
    with open(copy / "views.npy", "r+b") as stream:  # same file, same size, other views
        stream.seek(-bank.nbytes, 2)
        stream.write((bank + 1).tobytes())
    assert torch.equal(cache.views, before)


@pytest.mark.parametrize("mmap", [False, True])
def test_load_array_verifies_unless_told_not_to(tmp_path, mmap):
    """Kills store.x_load_array__mutmut_1 (default `verify=False`: the reader passes it
    explicitly, so only a new caller relying on the default would read unverified bytes), _8 and
    _28 (`verify` ignored: always checked)."""
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.float16))
    entry = file_entry(tmp_path / "a.npy")
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.float16)[::-1])  # same size, other bytes
    with pytest.raises(DamagedCache, match="a.npy is corrupted"):
        load_array(tmp_path, entry, mmap)
    assert load_array(tmp_path, entry, mmap, verify=False).tolist() == [5, 4, 3, 2, 1, 0]


def test_load_array_names_a_missing_or_truncated_file(tmp_path):
    """Kills store.x_load_array__mutmut_42, _43, _44 (a file missing when read into memory:
    TypeError or KeyError instead of "... is missing") and _14 (a damaged memory-mapped file
    opened anyway: a truncated one then failed in np.load with "cannot be read" instead of being
    named truncated)."""
    np.save(tmp_path / "a.npy", np.arange(600, dtype=np.float16))
    entry = file_entry(tmp_path / "a.npy")
    (tmp_path / "a.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:500])
    with pytest.raises(DamagedCache, match=r"^a.npy is truncated or altered \(500 bytes, expected 1328\)$"):
        load_array(tmp_path, entry, mmap=True)
    (tmp_path / "a.npy").unlink()
    with pytest.raises(DamagedCache, match="^a.npy is missing$"):
        load_array(tmp_path, entry, mmap=False)


@pytest.mark.parametrize("mmap", [False, True])
def test_a_pickled_array_is_never_loaded_even_when_its_checksum_matches(tmp_path, mmap):
    """Kills store.x_load_array__mutmut_41 (`allow_pickle=True` in the in-memory read: a .npy
    holding a pickle, recorded with its checksum, ran the pickle on load). The memory-mapped read
    refuses object arrays in NumPy itself (_24 is equivalent). The source scan in
    test_checkpoint.py catches the text too, but mutmut deselects it."""
    np.save(tmp_path / "a.npy", np.array([{"code": "runs"}], dtype=object), allow_pickle=True)
    with pytest.raises(DamagedCache, match="a.npy cannot be read"):
        load_array(tmp_path, file_entry(tmp_path / "a.npy"), mmap)


@pytest.mark.parametrize("drop", ["shards", "layout"])
def test_a_manifest_missing_a_section_is_refused_with_the_rebuild_hint(built, tmp_path, drop):
    """Kills reader.x_check_layout__mutmut_35 (a manifest that fails to parse counted as
    consistent: KeyError later), _38 (the hint names "None" instead of the folder) and
    reader.x_check_cache__mutmut_8 (the message names folder "None")."""
    cache_job, manifest = built
    copy = shutil.copytree(cache_job.folder, tmp_path / "copy")
    (copy / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != drop}))
    with pytest.raises(PotstillError, match=f"^teacher cache {copy}: manifest.json does not describe a complete cache; rebuild it .* away from {copy}\\)$"):
        TeacherCache(copy)


def test_a_fingerprint_mismatch_names_the_cache_folder_and_every_difference(built, tmp_path):
    """Kills reader.x_check_cache__mutmut_2 and reader.xǁTeacherCacheǁ__init____mutmut_12 (the
    message names folder "None"), reader.x_check_fingerprint__mutmut_15 (the separator between
    differences), _16 (the hint names "None") and _8, _10 (no `{}` default: a manifest without a
    fingerprint crashed with AttributeError instead of being refused)."""
    cache_job, manifest = built
    other = cache_job.fingerprint | {"format": 1, "views": cache_job.fingerprint["views"] | {"count": 4}}
    with pytest.raises(PotstillError, match=f"^teacher cache {cache_job.folder} was built from something else: "
                                            "the cache format of this potstill version: 2 -> 1; the views: count 3 -> 4; "
                                            f"rebuild it .* away from {cache_job.folder}\\)$"):
        TeacherCache(cache_job.folder, fingerprint=other)
    copy = shutil.copytree(cache_job.folder, tmp_path / "copy")
    (copy / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "fingerprint"}))
    with pytest.raises(PotstillError, match="built from something else: the cache format of this potstill version: None -> 2"):
        TeacherCache(copy, fingerprint=cache_job.fingerprint)


@pytest.mark.parametrize(("load", "mapped"), [("auto", True), (None, True), ("memory", False), ("mmap", True)])
def test_a_cache_above_the_memory_limit_is_memory_mapped_by_default(built, monkeypatch, load, mapped):
    """Kills reader.xǁTeacherCacheǁ__init____mutmut_3, _4 (the default `load` misspelt: never
    memory-mapped), _38 (`and` -> `or`: load "memory" mapped anyway), _39 (`!= "auto"`) and _40,
    _41 ("auto" misspelt). The test cache is small, so the limit is lowered below its size."""
    cache_job, manifest = built
    monkeypatch.setattr(reader, "MEMORY_LIMIT", manifest["bytes"]["total"] - 1)
    cache = TeacherCache(cache_job.folder) if load is None else TeacherCache(cache_job.folder, load=load)
    assert cache.mmap is mapped
    monkeypatch.setattr(reader, "MEMORY_LIMIT", manifest["bytes"]["total"])
    assert TeacherCache(cache_job.folder).mmap is False  # at the limit: in memory


def test_check_cache_names_the_folder_of_a_damaged_file(built, tmp_path):
    """Kills reader.x_check_cache__mutmut_21 (the damage reported for folder "None"), the path
    `potstill cache info` takes to check every checksum."""
    cache_job, manifest = built
    copy = shutil.copytree(cache_job.folder, tmp_path / "copy")
    (copy / "shard-00002-0.npy").unlink()
    with pytest.raises(PotstillError, match=f"^teacher cache {copy} is damaged: shard-00002-0.npy is missing; run"):
        check_cache(copy, manifest, None)
