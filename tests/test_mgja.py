"""The losses of eq. 6-9 against hand computations."""

import pytest
import torch

from align4d_core.config import MGJAConfig
from align4d_core.guidance import AnchorGuidance
from align4d_core.method.mgja import known_view_loss, random_views, unknown_view_loss, usva_weights


def test_usva_weights_follow_eq_9():
    motion, geometry = usva_weights(torch.tensor([0, 3, 7]), 8)
    torch.testing.assert_close(motion, torch.tensor([1 / 8, 4 / 8, 8 / 8]))
    torch.testing.assert_close(geometry, torch.tensor([7 / 8, 4 / 8, 0.0]))
    torch.testing.assert_close(motion + geometry, torch.ones(3))


def test_known_view_loss_is_weighted_mse_of_colour_and_mask():
    g = torch.Generator().manual_seed(0)
    rgb, frames = torch.rand(2, 5, 6, 3, generator=g), torch.rand(2, 5, 6, 3, generator=g)
    alpha, masks = torch.rand(2, 5, 6, 1, generator=g), torch.rand(2, 5, 6, 1, generator=g)
    config = MGJAConfig(lambda_rgb=10.0, lambda_mask=3.0)
    loss, parts = known_view_loss(rgb, alpha, frames, masks, config)
    expected = 10.0 * ((rgb - frames) ** 2).mean() + 3.0 * ((alpha - masks) ** 2).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert set(parts) == {"ksva_rgb", "ksva_mask"}
    no_mask, parts = known_view_loss(rgb, alpha, frames, None, config, ramp=0.5)
    assert float(no_mask) == pytest.approx(5.0 * float(((rgb - frames) ** 2).mean()), rel=1e-6)
    assert set(parts) == {"ksva_rgb"}


def test_random_views_are_n_per_frame_within_the_ranges_and_reproducible():
    config = MGJAConfig(views=4, elevation_range=(-30.0, 30.0))
    views = random_views(torch.tensor([0, 5]), config, torch.Generator().manual_seed(3))
    again = random_views(torch.tensor([0, 5]), config, torch.Generator().manual_seed(3))
    assert views.frame_index.tolist() == [0, 0, 0, 0, 5, 5, 5, 5]
    assert bool((views.elevation.abs() <= 30).all()) and bool(((views.azimuth >= -180) & (views.azimuth < 180)).all())
    assert torch.equal(views.azimuth, again.azimuth) and torch.equal(views.elevation, again.elevation)
    delta = views.delta()
    assert torch.equal(delta.azimuth, views.azimuth) and bool((delta.radius == 0).all())


def test_anchor_unknown_view_loss_is_the_weighted_image_loss():
    g = torch.Generator().manual_seed(1)
    config = MGJAConfig(views=2, lambda_anchor=100.0)
    views = random_views(torch.tensor([1, 3]), config, g)
    renders, references = torch.rand(4, 8, 8, 3, generator=g), torch.rand(4, 8, 8, 3, generator=g)
    loss, parts = unknown_view_loss(AnchorGuidance(), views, renders, renders, references, 4, config, g)
    per_view = ((renders - references) ** 2).mean(dim=(1, 2, 3))
    weights = torch.tensor([2 / 4, 2 / 4, 0.0, 0.0])  # (T - t)/T with t = frame + 1
    assert float(loss) == pytest.approx(100.0 * float((weights * per_view).mean()), rel=1e-6)
    assert "mot" not in parts and parts["geo"] == pytest.approx(float(per_view.mean()), rel=1e-6)
