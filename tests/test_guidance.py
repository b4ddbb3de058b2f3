"""Guidance backends: Zero123 on a tiny random model saved in the ports' diffusers layout, and anchor.

The Zero123 model is a tiny random one written file by file in ashawkey/zero123-xl-diffusers'
published layout (``tiny_zero123.py``) and loaded through :func:`load_guidance` exactly as real
weights are, with the hub in offline mode; ``test_zero123_loading.py`` covers the loading itself.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from tiny_zero123 import CLIP_MEAN, CLIP_SIZE, CLIP_STD, PROJECTION_DIM, SIZE, save_tiny_zero123

from align4d_core.config import GuidanceConfig
from align4d_core.guidance import AnchorGuidance, Guidance, ViewDelta, load_guidance

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_zero123(tmp_path_factory, offline_hub):
    folder = tmp_path_factory.mktemp("tiny-zero123")
    save_tiny_zero123(folder)
    return folder


@pytest.fixture(scope="module")
def frames():
    """Three 48 px video frames (resized to 64 by the guidance): a coloured square on white."""
    images = torch.ones(3, 48, 48, 3)
    for t in range(3):
        images[t, 12 + 4 * t : 36, 10 : 30 + 3 * t] = torch.tensor([0.9, 0.3 + 0.2 * t, 0.1])
    return images


@pytest.fixture(scope="module")
def zero123(tiny_zero123, frames):
    guidance = load_guidance(GuidanceConfig(backend="zero123", model=str(tiny_zero123), input_size=SIZE), "cpu")
    guidance.set_frames(frames)
    return guidance


def _delta(elevation, azimuth, radius) -> ViewDelta:
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    return ViewDelta(as_tensor(elevation), as_tensor(azimuth), as_tensor(radius))


# --- Zero123: pose, loading ------------------------------------------------------------------------


def test_zero123_pose_hand_computed_cases():
    from align4d_core.guidance import zero123_pose

    delta = _delta([30.0, 0.0, -15.0], [0.0, 90.0, 180.0], [0.0, 0.5, -0.2])
    expected = torch.tensor(
        [
            [-math.pi / 6, 0.0, 1.0, 0.0],  # 30° higher: smaller polar angle
            [0.0, 1.0, 0.0, 0.5],  # a quarter turn toward +x
            [math.pi / 12, 0.0, -1.0, -0.2],  # lower and behind, closer
        ]
    )
    torch.testing.assert_close(zero123_pose(delta, "zero123"), expected, atol=1e-6, rtol=0)
    stable = expected.clone()
    stable[:, 3] = math.pi / 2  # the condition's polar angle (elevation 0), no Δradius
    torch.testing.assert_close(zero123_pose(delta, "stable"), stable, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="zero123, stable"):
        zero123_pose(delta, "imagedream")


def test_loads_the_ports_layout_offline(zero123):
    from align4d_core.guidance import CameraProjection, Zero123Guidance

    assert isinstance(zero123, Zero123Guidance) and isinstance(zero123, Guidance)
    assert zero123.layout.name == "zero123-pipeline"
    assert zero123.dtype == torch.float32  # "auto" on CPU
    assert isinstance(zero123.projection, CameraProjection)
    assert zero123.projection.linear.weight.shape == (32, PROJECTION_DIM + 4)
    for model in (zero123.unet, zero123.vae, zero123.image_encoder, zero123.projection):
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())
    assert zero123.latent_shape == (4, SIZE // 8, SIZE // 8)
    assert zero123.probe_azimuths == (-90.0, 0.0, 90.0, 180.0)
    assert (zero123.min_step, zero123.max_step) == (20, 980)


# --- Zero123: conditioning, CFG, SDS -------------------------------------------------------------


def test_clip_embedding_of_tensors_matches_hand_normalised_pixels(zero123):
    """The image processor runs on float tensors (no PIL, no torchvision): white → (1 − mean)/std."""
    white = torch.ones(1, 40, 40, 3)
    pixels = ((1.0 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)).view(1, 3, 1, 1)
    expected = zero123.image_encoder(pixels.expand(1, 3, CLIP_SIZE, CLIP_SIZE)).image_embeds
    embedded = zero123._embed(white)
    assert embedded.image_embeds.shape == (1, PROJECTION_DIM)
    torch.testing.assert_close(embedded.image_embeds, expected, atol=1e-5, rtol=1e-4)
    image = torch.rand(1, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(8))
    mode = zero123.vae.encode(image.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mode()  # unscaled
    torch.testing.assert_close(zero123._embed(image).latents, mode, atol=1e-5, rtol=1e-4)


def test_guidance_scale_one_is_the_conditional_prediction(zero123):
    delta = _delta([10.0, -5.0], [30.0, 200.0], [0.0, 0.3])
    condition = zero123._condition(zero123._frame_embeddings(torch.tensor([0, 2])), delta)
    noisy = torch.randn(2, *zero123.latent_shape, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([500, 900])
    unet_in = torch.cat([noisy, condition.latents], dim=1)
    conditional = zero123.unet(unet_in, t, encoder_hidden_states=condition.tokens).sample
    torch.testing.assert_close(zero123.predict_noise(noisy, t, condition, 1.0), conditional, atol=1e-5, rtol=1e-4)
    guided = zero123.predict_noise(noisy, t, condition, 5.0)
    assert not torch.allclose(guided, conditional, atol=1e-3)


def test_sds_gradient_is_weighted_noise_residual(zero123):
    """∂loss_b/∂z_b = w(τ)(ε̂ − ε) with w(τ) = 1 − ᾱ_τ and ε̂ the guided prediction at z_τ (eq. 1)."""
    delta = _delta([0.0, 20.0, -10.0], [90.0, 0.0, -90.0], [0.0, 0.0, 0.1])
    condition = zero123._condition(zero123._frame_embeddings(torch.tensor([1, 1, 0])), delta)
    latents = torch.randn(3, *zero123.latent_shape, generator=torch.Generator().manual_seed(2))
    latents.requires_grad_()
    step = zero123.sds(latents, condition, torch.Generator().manual_seed(3))
    assert step.loss.shape == (3,)
    step.loss.sum().backward()
    torch.testing.assert_close(latents.grad, step.grad, atol=1e-6, rtol=0)

    assert bool(((step.timesteps >= 20) & (step.timesteps <= 980)).all())
    noisy = zero123.scheduler.add_noise(latents.detach(), step.noise, step.timesteps)
    noise_pred = zero123.predict_noise(noisy, step.timesteps, condition, zero123.config.guidance_scale)
    weight = (1.0 - zero123.scheduler.alphas_cumprod[step.timesteps]).view(3, 1, 1, 1)
    torch.testing.assert_close(step.grad, weight * (noise_pred - step.noise), atol=1e-5, rtol=1e-4)
    assert float(step.grad.abs().sum()) > 0

    again = zero123.sds(latents.detach(), condition, torch.Generator().manual_seed(3))
    torch.testing.assert_close(again.loss, step.loss.detach())  # one generator drives τ and ε


def test_motion_and_geometry_losses_backpropagate_to_renders(zero123):
    generator = torch.Generator().manual_seed(0)
    renders = torch.rand(2, 40, 40, 3, generator=generator).requires_grad_()  # resized to 64 inside
    delta = _delta([15.0, -20.0], [90.0, 180.0], [0.0, 0.2])
    motion = zero123.motion_loss(renders, torch.tensor([0, 2]), delta, generator)
    references = torch.rand(2, 40, 40, 3, generator=generator)
    geometry = zero123.geometry_loss(renders, references, generator)
    for loss in (motion, geometry):
        assert loss.shape == (2,) and bool(torch.isfinite(loss).all())
        (grad,) = torch.autograd.grad(loss.sum(), renders)
        assert bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0


def test_motion_loss_backpropagates_to_gaussian_means(zero123):
    from align4d_core.scene.cameras import orbit_cameras
    from align4d_core.scene.gaussians import Gaussians
    from align4d_core.scene.render import render

    generator = torch.Generator().manual_seed(4)
    n = 24
    means = (0.3 * torch.randn(n, 3, generator=generator)).requires_grad_()
    gaussians = Gaussians.from_activated(
        means,
        torch.full((n, 3), 0.08),
        torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(n, 4),
        torch.full((n,), 0.8),
        torch.rand(n, 3, generator=generator),
    )
    cameras = orbit_cameras(0.0, [0.0, 90.0], 2.0, width=SIZE)
    rgb = render(gaussians, cameras, backend="cpu").rgb
    delta = _delta([0.0, 0.0], [0.0, 90.0], [0.0, 0.0])
    loss = zero123.motion_loss(rgb, torch.tensor([0, 1]), delta, generator)
    loss.sum().backward()
    assert means.grad is not None
    assert bool(torch.isfinite(means.grad).all()) and float(means.grad.abs().sum()) > 0


def test_half_precision_keeps_float32_losses_and_render_gradients(tiny_zero123, frames):
    """The CUDA default (float16 models) with float32 renders, here on the CPU."""
    config = GuidanceConfig(backend="zero123", model=str(tiny_zero123), input_size=SIZE, dtype="float16")
    half = load_guidance(config, "cpu")
    assert half.unet.dtype == torch.float16 and half.image_encoder.dtype == torch.float16
    half.set_frames(frames)
    generator = torch.Generator().manual_seed(9)
    renders = torch.rand(2, SIZE, SIZE, 3, generator=generator).requires_grad_()
    delta = _delta([0.0, 10.0], [90.0, -90.0], [0.0, 0.0])
    loss = half.motion_loss(renders, torch.tensor([0, 1]), delta, generator)
    assert loss.dtype == torch.float32 and bool(torch.isfinite(loss).all())
    loss.sum().backward()
    assert renders.grad.dtype == torch.float32 and float(renders.grad.abs().sum()) > 0
    probed = half.probe(renders.detach(), torch.tensor([0, 1]), delta, (800,), half.probe_noise(generator))
    assert probed.dtype == torch.float32 and bool(torch.isfinite(probed).all())


def test_the_anneal_schedule_is_dreamgaussian4ds_and_uniform_is_the_default(zero123):
    """DG4D's zero123_utils.train_step with step_ratio: τ = round((1 − r)·1000) clipped to [20, 980]."""
    from align4d_core.guidance import sds_timesteps

    for ratio, expected in ((0.0, 980), (0.25, 750), (0.5, 500), (0.999, 20), (1.0, 20)):
        t = sds_timesteps(4, "anneal", ratio, (20, 980), 1000, torch.Generator().manual_seed(0))
        assert t.tolist() == [expected] * 4
    uniform = sds_timesteps(4096, "uniform", 0.5, (20, 980), 1000, torch.Generator().manual_seed(0))
    assert int(uniform.min()) >= 20 and int(uniform.max()) <= 980 and len(set(uniform.tolist())) > 500
    assert zero123.config.t_schedule == "uniform"  # the paper: "randomly sampled"
    with pytest.raises(ValueError, match="uniform, anneal"):
        sds_timesteps(1, "cosine", 0.5, (20, 980), 1000, torch.Generator())


def test_an_annealed_sds_step_uses_the_step_ratios_timestep(tiny_zero123, frames):
    config = GuidanceConfig(backend="zero123", model=str(tiny_zero123), input_size=SIZE, t_schedule="anneal")
    annealed = load_guidance(config, "cpu")
    annealed.set_frames(frames)
    condition = annealed._condition(annealed._frame_embeddings(torch.tensor([0, 1])), ViewDelta.zeros(2))
    latents = torch.randn(2, *annealed.latent_shape, generator=torch.Generator().manual_seed(1))
    step = annealed.sds(latents, condition, torch.Generator().manual_seed(2), step_ratio=0.3)
    assert step.timesteps.tolist() == [700, 700]


# --- Zero123: the MAOD probe -----------------------------------------------------------------------


def test_probe_is_deterministic_for_a_fixed_noise(zero123):
    noise = zero123.probe_noise(torch.Generator().manual_seed(0))
    assert noise.shape == (1, 4, SIZE // 8, SIZE // 8)
    torch.testing.assert_close(noise, zero123.probe_noise(torch.Generator().manual_seed(0)), atol=0, rtol=0)

    renders = torch.rand(4, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(5))
    index, delta = torch.zeros(4, dtype=torch.long), _delta([0.0] * 4, [-90.0, 0.0, 90.0, 180.0], [0.0] * 4)
    first = zero123.probe(renders, index, delta, (700, 800, 900), noise)
    second = zero123.probe(renders, index, delta, (700, 800, 900), noise)
    assert first.shape == (4,) and bool(torch.isfinite(first).all()) and bool((first > 0).all())
    assert torch.equal(first, second)
    other = zero123.probe(renders.flip(1), index, delta, (700, 800, 900), noise)
    assert not torch.allclose(first, other)
    with pytest.raises(ValueError, match="timesteps"):
        zero123.probe(renders, index, delta, (1000,), noise)


def test_probe_is_the_weighted_noise_error_averaged_over_timesteps(zero123):
    """eq. 5 for one sample and two timesteps, written out by hand."""
    renders = torch.rand(1, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(6))
    noise = zero123.probe_noise(torch.Generator().manual_seed(7))
    index, delta = torch.tensor([2]), _delta([0.0], [90.0], [0.0])
    condition = zero123._condition(zero123._frame_embeddings(index), delta)
    posterior = zero123.vae.encode(renders.permute(0, 3, 1, 2) * 2 - 1).latent_dist
    latents = posterior.mode() * zero123.vae.config.scaling_factor  # the mode: deterministic
    expected = 0.0
    for tau in (700, 900):
        t = torch.tensor([tau])
        pred = zero123.predict_noise(zero123.scheduler.add_noise(latents, noise, t), t, condition, 5.0)
        expected += (1 - zero123.scheduler.alphas_cumprod[tau]) * (pred - noise).square().mean() / 2
    probed = zero123.probe(renders, index, delta, (700, 900), noise)
    torch.testing.assert_close(probed, expected.view(1), atol=1e-5, rtol=1e-4)


# --- anchor, the factory, lazy import ------------------------------------------------------------


def test_anchor_geometry_loss_is_per_sample_mse():
    anchor = load_guidance(GuidanceConfig(backend="anchor"), "cpu")
    assert isinstance(anchor, AnchorGuidance) and isinstance(anchor, Guidance)
    assert anchor.name == "anchor" and anchor.probe_azimuths == ()
    generator = torch.Generator().manual_seed(0)
    renders = torch.rand(3, 8, 8, 3, generator=generator)
    references = torch.rand(3, 8, 8, 3, generator=generator)
    loss = anchor.geometry_loss(renders, references, generator)
    expected = torch.stack([torch.nn.functional.mse_loss(r, q) for r, q in zip(renders, references)])
    torch.testing.assert_close(loss, expected)
    anchor.set_frames(renders)
    assert anchor.motion_loss(renders, torch.zeros(3, dtype=torch.long), ViewDelta.zeros(3), generator) is None
    with pytest.raises(NotImplementedError, match="MAOD = VAOD"):
        anchor.probe(renders, torch.zeros(3, dtype=torch.long), ViewDelta.zeros(3), (700,), torch.zeros(1, 4, 1, 1))
    with pytest.raises(NotImplementedError, match="MAOD = VAOD"):
        anchor.probe_noise(generator)


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ValueError, match="anchor, zero123"):
        load_guidance(GuidanceConfig(backend="imagedream"), "cpu")


def test_importing_guidance_does_not_import_diffusers():
    code = (
        "import sys, align4d_core.guidance\n"
        "assert 'diffusers' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert result.returncode == 0, result.stderr
