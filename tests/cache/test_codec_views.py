"""Top-k storage against hand-worked numbers, and views that replay exactly."""

import math

import pytest
import torch

from potstill.cache import codec
from potstill.data import Augment
from potstill.data.views import apply_view, view_bank


def test_full_logits_round_trip_through_float16():
    logits = torch.tensor([[2.5, -1.25, 0.0]])
    fields = codec.encode(logits, None, torch.float16)
    assert list(fields) == ["logits"] and fields["logits"].dtype == torch.float16
    assert torch.equal(codec.decode(fields, 3), logits)  # these values are exact in fp16


def test_top_k_keeps_the_largest_and_a_fill_that_preserves_the_tail_mass():
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
    fields = codec.encode(logits, 2, torch.float32)
    assert fields["values"].tolist() == [[3.0, 1.0]] and fields["indices"].tolist() == [[0, 1]]
    fill = math.log(math.exp(0.0) + math.exp(-1.0)) - math.log(2)  # log(sum of the rest) - log(K - k)
    assert fields["fill"].item() == pytest.approx(fill, abs=1e-6)
    decoded = codec.decode(fields, 4)
    assert decoded.tolist()[0] == pytest.approx([3.0, 1.0, fill, fill], abs=1e-6)
    exact, approx = logits.softmax(-1)[0], decoded.softmax(-1)[0]
    assert approx[:2].tolist() == pytest.approx(exact[:2].tolist(), abs=1e-6)  # kept classes exact at T = 1
    assert approx[2:].sum().item() == pytest.approx(exact[2:].sum().item(), abs=1e-6)  # tail mass exact
    assert approx[2].item() == pytest.approx(approx[3].item())  # tail flattened


def test_top_k_indices_use_the_smallest_integer_type_and_scatter_back_in_place():
    logits = torch.randn(5, 7, 300)
    fields = codec.encode(logits, 5, torch.float32)
    assert fields["indices"].dtype == torch.int16 and fields["values"].shape == (5, 7, 5)
    decoded = codec.decode(fields, 300)
    top = logits.topk(5, dim=-1)
    assert torch.equal(decoded.gather(-1, top.indices), top.values)
    assert codec.index_dtype(10) == torch.uint8


def test_a_vanishing_tail_is_stored_finite():
    fields = codec.encode(torch.tensor([[0.0, -1e4, -1e4]]), 1, torch.float16)
    assert torch.isfinite(fields["fill"]).all() and fields["fill"].item() == pytest.approx(-30.0)


def test_view_bank_is_seeded_and_view_zero_is_the_plain_image():
    bank = view_bank(50, 4, hflip=True, padding=2, seed=7)
    assert bank.shape == (50, 4, 3) and bank.dtype == torch.uint8
    assert torch.equal(bank, view_bank(50, 4, hflip=True, padding=2, seed=7))
    assert not torch.equal(bank, view_bank(50, 4, hflip=True, padding=2, seed=8))
    assert bank[:, 0].tolist() == [[0, 2, 2]] * 50
    assert set(bank[:, 1:, 0].unique().tolist()) == {0, 1} and int(bank[:, 1:, 1:].max()) <= 4
    images = torch.rand(50, 1, 6, 6)
    assert torch.equal(apply_view(images, bank[:, 0], True, 2), images)


def test_online_augmentation_is_drawing_parameters_then_applying_them():
    images = torch.rand(16, 3, 8, 8)
    augment = Augment(hflip=True, crop_padding=2)
    online = augment(images, torch.Generator().manual_seed(3))
    params = augment.draw(16, torch.Generator().manual_seed(3))
    assert torch.equal(online, augment.apply(images, params))
    flipped = apply_view(images, torch.tensor([[1, 2, 2]] * 16, dtype=torch.uint8), True, 2)
    assert torch.equal(flipped, images.flip(-1))
    shifted = apply_view(images, torch.tensor([[0, 0, 2]] * 16, dtype=torch.uint8), True, 2)
    assert torch.equal(shifted[..., 2:, :], images[..., :-2, :])  # offset y 0: the image moves down by 2
