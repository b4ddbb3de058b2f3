"""Object Distance Alignment: VAOD recovers a known distance; MAOD picks the left local minimum."""

from dataclasses import replace

import pytest
import torch

from align4d_core.config import SearchConfig
from align4d_core.io import storage
from align4d_core.io.dataset import load_item
from align4d_core.io.manifest import read_manifest
from align4d_core.method.oda import FALLBACK_RULE, candidate_distances, search, search_vaod, select_maod
from align4d_core.scene.cameras import orbit_cameras
from align4d_core.scene.render import render


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
    full = SearchConfig(vaod_curve="full")
    vaod, distances, mse, masked = search_vaod(loaded.gaussians, loaded.video.frames[0], loaded.masks[0], full)
    assert abs(vaod - truth["distance"]) <= 0.05
    assert masked is not None and float(distances[int(torch.argmin(masked))]) == pytest.approx(vaod, abs=0.05)
    # the curve has the paper's shape: far renders are worse than the minimum, as are near ones
    assert float(mse[-1]) > float(mse.min()) and float(mse[5]) > float(mse.min())


def test_vaod_of_an_object_rendered_off_the_grid():
    g = torch.Generator().manual_seed(0)
    from align4d_core.scene.gaussians import Gaussians

    n = 400
    gaussians = Gaussians.from_activated(
        (torch.rand(n, 3, generator=g) - 0.5) * 0.6,
        torch.full((n, 3), 0.03),
        torch.randn(n, 4, generator=g),
        torch.full((n,), 0.9),
        torch.rand(n, 3, generator=g),
    )
    with torch.no_grad():
        frame = render(gaussians, orbit_cameras(0.0, 0.0, 1.73, width=40)).rgb[0]
    vaod, *_ = search_vaod(gaussians, frame, None)
    assert vaod == pytest.approx(1.75001)  # the nearest candidate to 1.73


def test_batched_and_one_at_a_time_sweeps_agree(small_sample):
    loaded = load_item(small_sample, item(small_sample, "arm_swing"))
    frame, mask = loaded.video.frames[0], loaded.masks[0]
    for curve in ("full", "bounded"):
        _, _, batched, batched_masked = search_vaod(
            loaded.gaussians, frame, mask, SearchConfig(batch=64, vaod_curve=curve)
        )
        _, _, single, single_masked = search_vaod(
            loaded.gaussians, frame, mask, SearchConfig(batch=1, vaod_curve=curve)
        )
        torch.testing.assert_close(batched, single, atol=1e-6, rtol=0, equal_nan=True)
        torch.testing.assert_close(batched_masked, single_masked, atol=1e-6, rtol=0, equal_nan=True)


def float64_sweep(gaussians, frame, mask):
    """The one-at-a-time float64 sweep that eq. 4 means: every distance rendered alone, whole."""
    from align4d_core.method.vaod_bound import float64_mse

    distances = candidate_distances(SearchConfig())
    curves = [float64_mse(gaussians, frame, mask, distances[i : i + 1], 49.1) for i in range(len(distances))]
    return distances, torch.cat([c[0] for c in curves]), torch.cat([c[1] for c in curves])


def sample_and_off_grid_frames(root, item_id, distance):
    """The item's first frame and mask, and a render of its object at a distance between candidates
    (none for ``distance`` None: the 16k-Gaussian items' float64 sweeps take half a minute each)."""
    loaded = load_item(root, item(root, item_id))
    frames = [(loaded.video.frames[0], loaded.masks[0])]
    if distance is not None:
        size = loaded.video.frames[0].shape[0]
        with torch.no_grad():
            out = render(loaded.gaussians, orbit_cameras(0.0, 0.0, distance, width=size))
        frames.append((out.rgb[0], (out.alpha[0] > 0.5).float()))
    return loaded.gaussians, frames


@pytest.mark.parametrize(
    "item_id, off_grid",
    [
        ("twist_column", 0.87),
        ("hopping_torus", 1.333),
        ("arm_swing", 2.012),
        ("waving_flag", None),
        ("pulsing_blob", None),
    ],
)
def test_the_bounded_sweep_finds_the_float64_sweeps_argmin(small_sample, item_id, off_grid):
    """Skipping distances never changes VAOD: on every sample item and an off-grid render of it,
    masked or not, the argmin is the one-at-a-time float64 sweep's, the distances it did render hold
    that sweep's values, and the ones it skipped lie above the minimum."""
    from align4d_core.method.vaod_bound import TIE_MARGIN

    gaussians, frames = sample_and_off_grid_frames(small_sample, item_id, off_grid)
    for frame, mask in frames:
        distances, mse64, masked64 = float64_sweep(gaussians, frame, mask)
        # the argument needs the float32 render's MSE within half the margin of the float64 one
        _, _, full, full_masked = search_vaod(gaussians, frame, mask, SearchConfig(vaod_curve="full"))
        assert float((full - mse64).abs().max()) < TIE_MARGIN / 2
        assert float((full_masked - masked64).abs().max()) < TIE_MARGIN / 2
        for masked, reference in ((False, mse64), (True, masked64)):
            vaod, _, mse, masked_mse = search_vaod(gaussians, frame, mask, SearchConfig(masked=masked))
            assert vaod == float(distances[int(torch.argmin(reference))])
            deciding = masked_mse if masked else mse
            rendered = ~torch.isnan(deciding)
            assert 1 <= int(rendered.sum()) < len(distances)  # something was skipped
            torch.testing.assert_close(deciding[rendered], reference[rendered], atol=TIE_MARGIN / 2, rtol=0)
            assert bool((reference[~rendered] > reference.min()).all())


def test_a_render_of_some_rows_is_those_rows_of_the_whole_image():
    """What the bound rests on: rendering rows apart gives them bit for bit as the whole image does."""
    from align4d_core.method.vaod_bound import PHASE_ORDER

    g = torch.Generator().manual_seed(2)
    from align4d_core.scene.gaussians import Gaussians

    n = 300
    gaussians = Gaussians.from_activated(
        (torch.rand(n, 3, generator=g) - 0.5) * 0.8,
        torch.rand(n, 3, generator=g) * 0.05 + 0.01,
        torch.randn(n, 4, generator=g),
        torch.rand(n, generator=g) * 0.9 + 0.05,
        torch.rand(n, 3, generator=g),
    )
    cams = orbit_cameras(0.0, 0.0, torch.tensor([0.2, 0.6, 1.5]), width=37, height=29)
    with torch.no_grad():
        whole = render(gaussians, cams)
        for phase in PHASE_ORDER:
            rows = torch.arange(phase, 29, len(PHASE_ORDER))
            part = render(gaussians, cams, rows=rows)
            assert torch.equal(part.rgb, whole.rgb[:, rows]) and torch.equal(part.alpha, whole.alpha[:, rows])


def test_search_without_probe_sets_maod_to_vaod(small_sample):
    from align4d_core.guidance import AnchorGuidance

    loaded = load_item(small_sample, item(small_sample, "twist_column"))
    result = search(loaded.gaussians, loaded.video.frames[0], loaded.masks[0], AnchorGuidance())
    assert result.maod == result.vaod and result.maod_sds is None and "no probe" in result.maod_rule
    assert len(result.distances) == len(result.vaod_mse) == 61 and "vaod" in result.seconds
    # every distance the bounded sweep left out has the lower bound that ruled it out, for the plot
    left_out = [k for k, v in enumerate(result.vaod_mse) if v is None]
    assert left_out and result.vaod_bound is not None and len(result.vaod_bound) == 61
    lowest = min(v for v in result.vaod_mse if v is not None)
    assert all(result.vaod_bound[k] is not None and result.vaod_bound[k] > lowest for k in left_out)
    assert all(result.vaod_bound[k] is None for k in range(61) if k not in left_out)


def curve(values):
    return torch.tensor(values, dtype=torch.float64)


DISTANCES = torch.arange(10, dtype=torch.float64) * 0.5


def test_maod_is_the_local_minimum_left_of_vaod_not_the_global_one_on_the_right():
    # local minimum at 1.0 (index 2), VAOD at 3.0, global minimum far right (background)
    sds = curve([5.0, 4.0, 3.0, 3.5, 3.6, 3.2, 3.1, 2.0, 1.0, 0.5])
    maod, rule, fell_back = select_maod(DISTANCES, sds, vaod=3.0)
    assert maod == 1.0 and "local minimum" in rule and not fell_back


def test_the_lowest_rule_takes_the_lowest_of_several_local_minima():
    sds = curve([5.0, 4.0, 4.5, 3.0, 3.8, 4.0, 4.2, 2.0, 1.0, 0.5])
    assert select_maod(DISTANCES, sds, vaod=3.5, rule="lowest")[0] == 1.5


def test_the_prominent_rule_prefers_a_deep_valley_to_a_lower_ripple_on_a_slope():
    """A ripple low on the slope toward VAOD (index 5: 2.0 after 2.1) against a real valley (index 2)."""
    sds = curve([6.0, 4.0, 2.5, 4.5, 2.2, 2.0, 2.1, 1.5, 1.0, 0.5])
    assert select_maod(DISTANCES, sds, vaod=3.5, rule="lowest")[0] == 2.5  # the ripple is lower...
    maod, rule, _ = select_maod(DISTANCES, sds, vaod=3.5, rule="prominent")
    assert maod == 1.0 and "most prominent" in rule  # ...but the valley is deeper: it rises by 2.0, the ripple by 0.1


def hand_prominence(values, i, low, high):
    """Prominence by brute force: the smallest of the highest points on the way to lower ground."""
    left = [j for j in range(low, i) if values[j] < values[i]]
    right = [j for j in range(i + 1, high + 1) if values[j] < values[i]]
    start = max(left) if left else low
    end = min(right) if right else high
    return min(max(values[start : i + 1]) - values[i], max(values[i : end + 1]) - values[i])


def test_prominence_matches_a_brute_force_definition():
    from align4d_core.method.oda import _prominence

    generator = torch.Generator().manual_seed(3)
    for _ in range(50):
        values = torch.rand(12, generator=generator).tolist()
        for i in range(1, 11):
            if values[i] < values[i - 1] and values[i] <= values[i + 1]:
                assert abs(_prominence(values, i, 0, 11) - hand_prominence(values, i, 0, 11)) < 1e-12


def test_distances_where_the_object_does_not_fit_are_ignored():
    """A deep dip at 0.5 (the camera inside the object, Fig. 11a) wins unless unfit distances are dropped."""
    sds = curve([4.0, 1.0, 3.0, 4.0, 2.5, 3.5, 4.0, 2.0, 1.0, 0.5])
    assert select_maod(DISTANCES, sds, vaod=3.0)[0] == 0.5
    fits = torch.tensor([False, False, True, True, True, True, True, True, True, True])
    maod, rule, _ = select_maod(DISTANCES, sds, vaod=3.0, fits=fits)
    assert maod == 2.0 and "fits the view" in rule
    nothing_fits = torch.tensor([False] * 6 + [True] * 4)
    assert select_maod(DISTANCES, sds, vaod=3.0, fits=nothing_fits) == (3.0, FALLBACK_RULE, True)


def test_a_local_minimum_at_or_right_of_vaod_does_not_count():
    sds = curve([5.0, 4.5, 4.0, 3.5, 3.0, 2.5, 3.0, 2.0, 1.0, 0.5])  # only local min at 2.5 = VAOD
    maod, rule, fell_back = select_maod(DISTANCES, sds, vaod=2.5)
    assert maod == 2.5 and rule == FALLBACK_RULE and fell_back


def test_no_local_minimum_falls_back_to_vaod():
    sds = curve([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5])  # decreasing everywhere
    assert select_maod(DISTANCES, sds, vaod=2.0) == (2.0, FALLBACK_RULE, True)


def test_a_flat_bottom_counts_once_at_its_left_end():
    sds = curve([5.0, 4.0, 3.0, 3.0, 3.0, 4.0, 4.5, 2.0, 1.0, 0.5])
    assert select_maod(DISTANCES, sds, vaod=3.5)[0] == 1.0


def test_fits_in_view_is_false_inside_and_too_close_true_once_the_object_is_framed():
    """A unit cube of points at the origin, fovy 49.1°: it fits once d ≥ 1/tan(24.55°) + 1 ≈ 3.19."""
    import math

    from align4d_core.method.oda import fits_in_view
    from align4d_core.scene.gaussians import Gaussians

    corners = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
    n = len(corners)
    cube = Gaussians.from_activated(
        corners,
        torch.full((n, 3), 0.01),
        torch.tensor([[1.0, 0, 0, 0]]).expand(n, 4),
        torch.full((n,), 0.9),
        torch.rand(n, 3),
    )
    threshold = 1.0 / math.tan(math.radians(49.1) / 2) + 1.0
    distances = torch.tensor([0.5, 2.0, threshold - 0.01, threshold + 0.01, 5.0], dtype=torch.float64)
    fits = fits_in_view(cube, distances, (-90.0, 0.0, 90.0, 180.0), 49.1, fraction=1.0)
    assert fits.tolist() == [False, False, False, True, True]


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
    fits = torch.tensor(first.maod_fits)
    assert first.maod == select_maod(distances, torch.tensor(first.maod_sds, dtype=torch.float64), first.vaod, fits)[0]
    assert first.maod_fallback == (first.maod_rule == FALLBACK_RULE)


def test_the_relative_probe_radius_reaches_the_model(small_sample, tmp_path_factory):
    """probe_radius 'relative' passes d' − VAOD as Zero123's Δradius, 'zero' passes 0: the curves differ."""
    from tiny_zero123 import SIZE, save_tiny_zero123

    from align4d_core.config import GuidanceConfig
    from align4d_core.guidance import load_guidance
    from align4d_core.method.oda import candidate_distances, probe_curve

    folder = tmp_path_factory.mktemp("tiny-zero123-radius")
    save_tiny_zero123(folder)
    guidance = load_guidance(GuidanceConfig(backend="zero123", model=str(folder), input_size=SIZE), "cpu")
    loaded = load_item(small_sample, item(small_sample, "arm_swing"))
    guidance.set_frames(loaded.video.frames[:1])
    config = SearchConfig(probe_size=SIZE, d_min=1.0, d_max=2.0, d_step=0.5)
    distances = candidate_distances(config)
    zero = probe_curve(guidance, loaded.gaussians, distances, replace(config, probe_radius="zero"), vaod=1.5)
    relative = probe_curve(guidance, loaded.gaussians, distances, replace(config, probe_radius="relative"), vaod=1.5)
    assert torch.equal(zero[1], relative[1])  # at d' = VAOD, Δradius is 0 either way
    assert not torch.allclose(zero[[0, 2]], relative[[0, 2]])
    with pytest.raises(ValueError, match="needs the VAOD"):
        probe_curve(guidance, loaded.gaussians, distances, replace(config, probe_radius="relative"))
