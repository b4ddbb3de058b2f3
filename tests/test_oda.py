"""Object Distance Alignment: VAOD recovers a known distance; MAOD picks the left local minimum."""

import pytest
import torch

from align4d_core import storage
from align4d_core.cameras import orbit_cameras
from align4d_core.config import SearchConfig
from align4d_core.dataset import load_item
from align4d_core.manifest import read_manifest
from align4d_core.oda import FALLBACK_RULE, candidate_distances, search, search_vaod, select_maod
from align4d_core.render import render


def item(root, item_id):
    return next(i for i in read_manifest(root) if i.id == item_id)


def test_candidates_are_the_papers_grid():
    d = candidate_distances(SearchConfig())
    assert len(d) == 61
    assert float(d[0]) == pytest.approx(0.00001) and float(d[-1]) == pytest.approx(3.00001)
    assert torch.allclose(d[1:] - d[:-1], torch.full((60,), 0.05, dtype=torch.float64))


@pytest.mark.parametrize("item_id", ["twist_column", "arm_swing"])
def test_vaod_recovers_the_true_distance_of_a_sample_item(small_sample, item_id):
    loaded = load_item(small_sample, item(small_sample, item_id))
    truth = storage.read_json(storage.join(small_sample, "items", item_id, "truth.json"))
    vaod, distances, mse, masked = search_vaod(loaded.gaussians, loaded.video.frames[0], loaded.masks[0])
    assert abs(vaod - truth["distance"]) <= 0.05
    assert masked is not None and float(distances[int(torch.argmin(masked))]) == pytest.approx(vaod, abs=0.05)
    # the curve has the paper's shape: far renders are worse than the minimum, as are near ones
    assert float(mse[-1]) > float(mse.min()) and float(mse[5]) > float(mse.min())


def test_vaod_of_an_object_rendered_off_the_grid():
    g = torch.Generator().manual_seed(0)
    from align4d_core.gaussians import Gaussians

    n = 400
    gaussians = Gaussians.from_activated(
        (torch.rand(n, 3, generator=g) - 0.5) * 0.6, torch.full((n, 3), 0.03), torch.randn(n, 4, generator=g),
        torch.full((n,), 0.9), torch.rand(n, 3, generator=g))  # fmt: skip
    with torch.no_grad():
        frame = render(gaussians, orbit_cameras(0.0, 0.0, 1.73, width=40)).rgb[0]
    vaod, *_ = search_vaod(gaussians, frame, None)
    assert vaod == pytest.approx(1.75001)  # the nearest candidate to 1.73


def test_batched_and_one_at_a_time_sweeps_agree(small_sample):
    loaded = load_item(small_sample, item(small_sample, "arm_swing"))
    frame, mask = loaded.video.frames[0], loaded.masks[0]
    _, _, batched, batched_masked = search_vaod(loaded.gaussians, frame, mask, SearchConfig(batch=64))
    _, _, single, single_masked = search_vaod(loaded.gaussians, frame, mask, SearchConfig(batch=1))
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=0)
    torch.testing.assert_close(batched_masked, single_masked, atol=1e-6, rtol=0)


def test_search_without_probe_sets_maod_to_vaod(small_sample):
    from align4d_core.guidance import AnchorGuidance

    loaded = load_item(small_sample, item(small_sample, "twist_column"))
    result = search(loaded.gaussians, loaded.video.frames[0], loaded.masks[0], AnchorGuidance())
    assert result.maod == result.vaod and result.maod_sds is None and "no probe" in result.maod_rule
    assert len(result.distances) == len(result.vaod_mse) == 61 and "vaod" in result.seconds


def curve(values):
    return torch.tensor(values, dtype=torch.float64)


DISTANCES = torch.arange(10, dtype=torch.float64) * 0.5


def test_maod_is_the_local_minimum_left_of_vaod_not_the_global_one_on_the_right():
    # local minimum at 1.0 (index 2), VAOD at 3.0, global minimum far right (background)
    sds = curve([5.0, 4.0, 3.0, 3.5, 3.6, 3.2, 3.1, 2.0, 1.0, 0.5])
    maod, rule = select_maod(DISTANCES, sds, vaod=3.0)
    assert maod == 1.0 and "local minimum" in rule


def test_maod_takes_the_lowest_of_several_local_minima_left_of_vaod():
    sds = curve([5.0, 4.0, 4.5, 3.0, 3.8, 4.0, 4.2, 2.0, 1.0, 0.5])
    assert select_maod(DISTANCES, sds, vaod=3.5)[0] == 1.5


def test_a_local_minimum_at_or_right_of_vaod_does_not_count():
    sds = curve([5.0, 4.5, 4.0, 3.5, 3.0, 2.5, 3.0, 2.0, 1.0, 0.5])  # only local min at 2.5 = VAOD
    maod, rule = select_maod(DISTANCES, sds, vaod=2.5)
    assert maod == 2.5 and rule == FALLBACK_RULE


def test_no_local_minimum_falls_back_to_vaod():
    sds = curve([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5])  # decreasing everywhere
    assert select_maod(DISTANCES, sds, vaod=2.0) == (2.0, FALLBACK_RULE)


def test_a_flat_bottom_counts_once_at_its_left_end():
    sds = curve([5.0, 4.0, 3.0, 3.0, 3.0, 4.0, 4.5, 2.0, 1.0, 0.5])
    assert select_maod(DISTANCES, sds, vaod=3.5)[0] == 1.0


def test_maod_from_the_zero123_probe_is_deterministic_and_left_of_vaod(small_sample, tmp_path_factory):
    from tiny_zero123 import SIZE, save_tiny_zero123

    from align4d_core.config import GuidanceConfig
    from align4d_core.guidance import load_guidance

    folder = tmp_path_factory.mktemp("tiny-zero123-oda")
    save_tiny_zero123(folder)
    guidance = load_guidance(GuidanceConfig(backend="zero123", model=str(folder), input_size=SIZE), "cpu")
    loaded = load_item(small_sample, item(small_sample, "arm_swing"))
    config = SearchConfig(probe_size=SIZE)
    first = search(loaded.gaussians, loaded.video.frames[0], loaded.masks[0], guidance, config)
    second = search(loaded.gaussians, loaded.video.frames[0], loaded.masks[0], guidance, config)
    assert first.maod_sds == second.maod_sds and len(first.maod_sds) == 61
    assert all(torch.isfinite(torch.tensor(first.maod_sds)))
    assert first.maod <= first.vaod and "maod" in first.seconds
    distances = torch.tensor(first.distances, dtype=torch.float64)
    assert first.maod == select_maod(distances, torch.tensor(first.maod_sds, dtype=torch.float64), first.vaod)[0]
