"""NaN and +-inf in float images are named where data is loaded, with the split and the first
sample indices, instead of surfacing later as a NaN loss or a 'different' teacher cache (issue 11)."""

import re

import numpy as np
import pytest
import torch

from potstill.data import ArrayData, load_dataset
from potstill.errors import PotstillError


def labels(count: int) -> torch.Tensor:
    return torch.arange(count) % 3


@pytest.mark.parametrize("value, kind", [(float("nan"), "NaN"), (float("inf"), "+inf"), (float("-inf"), "-inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_arraydata_names_the_split_the_sample_and_the_kind(value, kind, dtype):
    """Planted bug: ArrayData accepted NaN/inf images; the NaN then made the channel mean NaN and
    the teacher cache fingerprint unequal to itself ('built from something else')."""
    images = torch.rand(10, 1, 4, 4).to(dtype)
    images[6, 0, 2, 1] = value
    with pytest.raises(PotstillError, match=rf"the train images hold non-finite values in 1 of 10 samples: sample 6 \({re.escape(kind)}\)"):
        ArrayData(images, labels(10), 3, split="train")


def test_many_bad_samples_list_the_first_few_and_count_the_rest():
    """Planted bug: with NaN in many samples nothing was reported at all; the message lists the
    first five sample indices, every kind found in each, and how many more."""
    images = torch.rand(40, 3, 2, 2)
    images[[1, 4, 9, 16, 25, 36], 0, 0, 0] = float("nan")
    images[4, 2, 1, 1] = float("-inf")
    with pytest.raises(PotstillError) as error:
        ArrayData(images, labels(40), 3, split="test")
    message = str(error.value)
    assert "the test images hold non-finite values in 6 of 40 samples" in message
    assert "samples 1 (NaN), 4 (NaN, -inf), 9 (NaN), 16 (NaN), 25 (NaN) and 1 more" in message


def test_the_check_runs_in_chunks_and_finds_the_last_sample():
    """Planted bug: no finiteness check existed; the chunked pass (bounded memory on large arrays)
    must still see a bad value in the last sample of the last, partial chunk, and a chunk whose
    sum overflows (the fast path) must not be taken for one holding inf."""
    from potstill.data.arrays import check_finite

    images = torch.rand(1001, 1, 3, 3)
    check_finite(images, "the images", chunk_elements=50)  # all finite: no error
    images[1000, 0, 2, 2] = float("inf")
    with pytest.raises(PotstillError, match=r"sample 1000 \(\+inf\)"):
        check_finite(images, "the images", chunk_elements=50)
    check_finite(torch.full((4, 1, 2, 2), 255, dtype=torch.uint8), "the images")  # integer images: nothing to check
    check_finite(torch.full((4, 1, 2, 2), 3e38), "the images")  # the sum overflows, yet every value is finite


def test_subsets_keep_the_split_name_and_numpy_arrays_are_accepted():
    """Planted bug: ArrayData refused numpy arrays ('numpy.ndarray' object has no attribute 'long');
    they are wrapped without copying and never modified, and NaN in them is caught the same way."""
    images = np.random.default_rng(0).random((6, 1, 2, 2), dtype=np.float32)
    before = images.copy()
    data = ArrayData(images, np.arange(6) % 3, 3, split="train")
    assert data.inputs.dtype == torch.float32 and data.targets.dtype == torch.int64
    assert data.subset(torch.tensor([0, 2])).split == "train"
    assert np.array_equal(images, before)
    images[3, 0, 0, 0] = np.nan
    with pytest.raises(PotstillError, match=r"sample 3 \(NaN\)"):
        ArrayData(images, np.arange(6) % 3, 3, split="train")


def test_a_registered_dataset_with_a_nan_pixel_is_named(monkeypatch):
    """Planted bug: load_dataset('digits') with a NaN pixel in the files loaded fine and trained on
    NaN; registered datasets now pass the same check, and the error names the dataset."""
    import sklearn.datasets

    real = sklearn.datasets.load_digits

    def load_digits_with_a_nan(*args, **kwargs):
        bunch = real(*args, **kwargs)
        bunch.images = bunch.images.copy()
        bunch.images[17, 3, 4] = np.nan
        return bunch

    monkeypatch.setattr(sklearn.datasets, "load_digits", load_digits_with_a_nan)
    with pytest.raises(PotstillError, match=r"dataset 'digits': the images hold non-finite values in 1 of 1797 samples: sample 17 \(NaN\)"):
        load_dataset("digits")
