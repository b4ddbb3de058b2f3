"""The web ``.splat`` format: the byte layout, the viewer's sort order, round trips and bad files."""

from __future__ import annotations

import struct
import uuid

import numpy as np
import pytest
import torch

from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.splat import SPLAT_RECORD, importance_order, read_splat, splat_bytes, write_splat
from align4d_core.scene.gaussians import Gaussians, rgb_to_sh0

STEP = 1 / 255  # colour and opacity bytes
ROTATION_STEP = 1 / 128  # rotation bytes
FLOAT_SLACK = 1e-6  # float32 rounding on top of the byte quantisation


def varied_gaussians(n: int = 300, seed: int = 0) -> Gaussians:
    """Distinct positions, colours partly outside [0, 1], opacities near 0 and 1, scales over 2 decades."""
    gen = torch.Generator().manual_seed(seed)
    uniform = lambda lo, hi, *shape: lo + (hi - lo) * torch.rand(*shape, generator=gen)  # noqa: E731
    return Gaussians(
        means=torch.randn(n, 3, generator=gen) * 2,
        log_scales=uniform(-6.0, -1.0, n, 3),
        quats=torch.randn(n, 4, generator=gen),
        opacity_logits=torch.randn(n, generator=gen) * 4,
        sh0=rgb_to_sh0(uniform(-0.2, 1.2, n, 3)),
    )


def file_order(original: Gaussians, read: Gaussians) -> np.ndarray:
    """For each record read, the index of the original Gaussian with exactly that position."""
    index = {tuple(p): i for i, p in enumerate(original.means.numpy().tolist())}
    assert len(index) == len(original), "positions must be distinct to identify the order"
    return np.array([index[tuple(p)] for p in read.means.numpy().tolist()])


@pytest.fixture
def splat_uri(tmp_path) -> str:
    return f"file://{tmp_path}/object.splat"


# --- the layout ------------------------------------------------------------------------------


def test_one_gaussian_gives_the_documented_32_bytes():
    gaussians = Gaussians(
        means=torch.tensor([[1.0, -2.0, 3.5]]),
        log_scales=torch.log(torch.tensor([[0.5, 0.25, 2.0]])),
        quats=torch.tensor([[2.0, 0.0, 0.0, 0.0]]),  # any norm: normalised to (1, 0, 0, 0)
        opacity_logits=torch.tensor([0.0]),  # sigmoid 0.5 -> 127.5 -> 128 (ties to even)
        sh0=rgb_to_sh0(torch.tensor([[0.5, 1.5, -0.5]])),  # 127.5 -> 128; clipped to 255 and 0
    )
    # w = 1 -> 1 * 128 + 128 = 256, clipped to 255
    expected = struct.pack("<3f3f4B4B", 1.0, -2.0, 3.5, 0.5, 0.25, 2.0, 128, 255, 0, 128, 255, 128, 128, 128)
    assert len(expected) == 32
    assert splat_bytes(gaussians) == expected


def test_rotation_bytes_are_the_normalised_quaternion_in_ply_order():
    q = torch.tensor([[0.0, 0.6, -0.8, 0.0]])  # unit already; w = rot_0 first
    gaussians = Gaussians(
        means=torch.zeros(1, 3),
        log_scales=torch.zeros(1, 3),
        quats=q * 3,
        opacity_logits=torch.zeros(1),
        sh0=torch.zeros(1, 3),
    )
    rotation = splat_bytes(gaussians)[28:32]
    assert list(rotation) == [128, 205, 26, 128]  # 0.6 * 128 + 128 = 204.8, -0.8 * 128 + 128 = 25.6


def test_records_are_sorted_by_volume_times_opacity_largest_first(splat_uri):
    log_scales = torch.log(torch.tensor([[0.1, 0.1, 0.1], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]))
    opacities = torch.tensor([0.9, 0.01, 0.5, 0.9])
    # volume * opacity: 0.0009, 0.01, 0.0625, 0.9 -> written order 3, 2, 1, 0
    gaussians = Gaussians(
        means=torch.arange(12, dtype=torch.float32).reshape(4, 3),
        log_scales=log_scales,
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(4, 1),
        opacity_logits=torch.logit(opacities),
        sh0=torch.zeros(4, 3),
    )
    assert importance_order(gaussians).tolist() == [3, 2, 1, 0]
    write_splat(splat_uri, gaussians)
    assert file_order(gaussians, read_splat(splat_uri)).tolist() == [3, 2, 1, 0]


def test_equal_keys_keep_their_input_order():
    n = 5
    gaussians = Gaussians(
        means=torch.arange(3 * n, dtype=torch.float32).reshape(n, 3),
        log_scales=torch.zeros(n, 3),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        opacity_logits=torch.zeros(n),
        sh0=torch.zeros(n, 3),
    )
    assert importance_order(gaussians).tolist() == list(range(n))


# --- round trips -----------------------------------------------------------------------------


def test_round_trip_keeps_count_positions_and_quantised_values(splat_uri):
    original = varied_gaussians()
    write_splat(splat_uri, original)
    read = read_splat(splat_uri)

    assert len(read) == len(original) == 300
    assert read.dtype == torch.float32
    order = file_order(original, read)
    assert sorted(order.tolist()) == list(range(len(original)))
    expected = original.select(torch.from_numpy(order))
    assert torch.equal(read.means, expected.means)  # exact, not close

    # the documented sort, checked on the original values (not on the quantised ones read back)
    key = (expected.scales.prod(dim=-1) * expected.opacities).double()
    assert bool((key[:-1] >= key[1:]).all())

    torch.testing.assert_close(read.log_scales, expected.log_scales, rtol=0, atol=FLOAT_SLACK)
    _assert_quantised(read.colors, expected.colors.clamp(0, 1), STEP / 2)
    _assert_quantised(read.opacities, expected.opacities, STEP / 2)
    _assert_quantised(read.quats, expected.rotations, ROTATION_STEP)  # half a step, a full one at +1
    same_rotation = (read.rotations * expected.rotations).sum(dim=-1).abs()  # up to sign
    assert float(same_rotation.min()) > 0.9998  # |error| <= 2/128 gives dot >= 1 - (2/128)^2 / 2


def _assert_quantised(read: torch.Tensor, true: torch.Tensor, bound: float) -> None:
    """Within ``bound`` of the true value, and visibly quantised (a lossless no-op would fail)."""
    error = (true - read).double().abs()
    assert float(error.max()) <= bound + FLOAT_SLACK, float(error.max())
    assert float(error.max()) > bound / 4, float(error.max())


def test_read_then_write_keeps_positions_and_colour_bytes(tmp_path):
    """Rounding (not truncating) makes colours and opacities stable; scales and rotations are
    recomputed (log then exp, renormalisation) and move by at most a float32 ulp and one step. Near
    ties of the sort key may swap, since the key is now computed from the quantised opacity."""
    first = f"{tmp_path}/first.splat"
    write_splat(first, varied_gaussians(seed=1))
    again = f"{tmp_path}/again.splat"
    write_splat(again, read_splat(first))
    a, b = (np.frombuffer(storage.read_bytes(uri), dtype=SPLAT_RECORD) for uri in (first, again))
    row_of = {tuple(p): i for i, p in enumerate(a["position"].tolist())}
    a = a[[row_of[tuple(p)] for p in b["position"].tolist()]]
    assert np.array_equal(a["position"], b["position"])
    assert np.array_equal(a["rgba"], b["rgba"])
    np.testing.assert_allclose(a["scale"], b["scale"], rtol=4e-7, atol=0)
    assert int(np.abs(a["rotation"].astype(int) - b["rotation"]).max()) <= 1


def test_write_is_atomic_and_goes_through_storage(tmp_path):
    uri = f"memory://test-splat-{uuid.uuid4().hex}/frames/0.splat"
    gaussians = varied_gaussians(n=10)
    write_splat(uri, gaussians)
    assert storage.read_bytes(uri) == splat_bytes(gaussians)
    write_splat(f"{tmp_path}/frames/0.splat", gaussians)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["0.splat"]  # no temp file left


def test_float64_gaussians_are_written_as_float32(splat_uri):
    original = varied_gaussians(n=20)
    write_splat(splat_uri, original.to(torch.float64))
    assert storage.read_bytes(splat_uri) == splat_bytes(original)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty .splat file"),
        (b"\0" * 33, "33 bytes, is not a multiple of 32"),
        (b"ply\nformat binary_little_endian 1.0\n", "is not a multiple of 32"),
    ],
)
def test_bad_files_name_the_file_and_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.splat"
    path.write_bytes(content)
    with pytest.raises(InputError, match=reason) as info:
        read_splat(str(path))
    assert info.value.uri == str(path)


def test_records_that_hold_no_gaussian_are_refused(tmp_path):
    good = splat_bytes(varied_gaussians(n=3))
    zero_scale = good[:12] + struct.pack("<3f", 0.0, 1.0, 1.0) + good[24:]
    no_rotation = good[:28] + bytes([128, 128, 128, 128]) + good[32:]
    nan_position = struct.pack("<f", float("nan")) + good[4:]
    for content, reason in [
        (zero_scale, "1 of 3 scales are not positive"),
        (no_rotation, "1 of 3 rotations are all 128"),
        (nan_position, "1 of 3 positions are NaN/inf"),
    ]:
        path = tmp_path / "bad.splat"
        path.write_bytes(content)
        with pytest.raises(InputError, match=reason):
            read_splat(str(path))


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_splat(str(tmp_path / "absent.splat"))


def test_unwritable_gaussians_are_refused_before_anything_is_written(tmp_path):
    uri = f"{tmp_path}/out.splat"
    with pytest.raises(InputError, match="zero Gaussians"):
        write_splat(uri, Gaussians.empty())
    huge = varied_gaussians(n=4)
    huge.log_scales[1, 0] = 100.0  # exp overflows float32
    with pytest.raises(InputError, match="1 scales whose exp is inf"):
        write_splat(uri, huge)
    nan = varied_gaussians(n=4)
    nan.means[0, 0] = float("nan")
    with pytest.raises(InputError, match="means has 1 NaN/inf"):
        write_splat(uri, nan)
    batched = varied_gaussians(n=4).map(lambda t: t.unsqueeze(0))
    with pytest.raises(ValueError, match="unbatched"):
        write_splat(uri, batched)
    assert not (tmp_path / "out.splat").exists()
