"""The CPU rasterizer against the brute-force float64 reference, autograd and gsplat."""

import pytest
import torch

from align4d_core.scene.cameras import orbit_cameras
from align4d_core.scene.gaussians import Gaussians
from align4d_core.scene.render import rasterize, render
from align4d_core.scene.render.reference import render_reference


def random_scene(n, seed, dtype=torch.float64, spread=0.8, per_camera=0):
    g = torch.Generator().manual_seed(seed)
    lead = (per_camera,) if per_camera else ()
    means = (torch.rand(*lead, n, 3, generator=g, dtype=dtype) - 0.5) * spread
    quats = torch.randn(*lead, n, 4, generator=g, dtype=dtype)
    scales = torch.rand(*lead, n, 3, generator=g, dtype=dtype) * 0.08 + 0.01
    opacities = torch.rand(*lead, n, generator=g, dtype=dtype) * 0.85 + 0.05
    colors = torch.rand(*lead, n, 3, generator=g, dtype=dtype)
    return [means, quats, scales, opacities, colors]


def cameras(width, height, dtype=torch.float64):
    return orbit_cameras(
        [0.0, 20.0, -35.0], [0.0, 70.0, 200.0], [1.5, 1.2, 2.1], width=width, height=height, dtype=dtype
    )


def compare_with_reference(scene, cams, atol):
    bg = torch.tensor([1.0, 1.0, 1.0], dtype=scene[0].dtype)
    fast = rasterize(*scene, cams.viewmats, cams.Ks, cams.width, cams.height, background=bg)
    ref_rgb, ref_alpha, ref_depth = render_reference(*scene, cams.viewmats, cams.Ks, cams.width, cams.height, bg)
    n = len(cams)
    torch.testing.assert_close(fast.rgb.reshape(n, -1, 3), ref_rgb.to(fast.rgb.dtype), atol=atol, rtol=0)
    torch.testing.assert_close(fast.alpha.reshape(n, -1, 1), ref_alpha.to(fast.rgb.dtype), atol=atol, rtol=0)
    covered = ref_alpha > 0.05  # expected depth is only meaningful where something was drawn
    torch.testing.assert_close(
        fast.depth.reshape(n, -1, 1)[covered], ref_depth[covered].to(fast.rgb.dtype), atol=atol * 10, rtol=0
    )
    return fast


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_reference(seed):
    scene = random_scene(40, seed)
    out = compare_with_reference(scene, cameras(29, 23), atol=1e-5)
    assert out.alpha.max() > 0.5, "the scene must actually cover pixels for the test to mean anything"


def test_matches_reference_with_one_gaussian_set_per_camera():
    scene = random_scene(30, 7, per_camera=3)
    compare_with_reference(scene, cameras(24, 24), atol=1e-5)


def test_dense_scene_exercises_early_termination():
    # many opaque Gaussians stacked in depth: most pixels stop at transmittance 1e-4
    scene = random_scene(300, 3, spread=0.3)
    scene[3] = torch.full_like(scene[3], 0.95)
    out = compare_with_reference(scene, cameras(20, 20), atol=1e-5)
    assert (out.alpha > 0.999).float().mean() > 0.05  # transmittance below 1e-3: the 1e-4 stop is reached


def test_gaussians_behind_or_beside_the_camera_are_culled_like_the_reference():
    scene = random_scene(60, 11, spread=4.0)  # some behind the camera, some outside the frustum
    compare_with_reference(scene, cameras(26, 18), atol=1e-5)


def test_float32_path_matches_reference():
    scene64 = random_scene(80, 5)
    cams = cameras(32, 32)
    scene32 = [t.float() for t in scene64]
    fast = rasterize(*scene32, cams.viewmats.float(), cams.Ks.float(), 32, 32, background=1.0)
    ref_rgb, _, _ = render_reference(*scene64, cams.viewmats, cams.Ks, 32, 32, torch.ones(3, dtype=torch.float64))
    assert (fast.rgb.reshape(3, -1, 3).double() - ref_rgb).abs().max() < 1e-4


@pytest.mark.parametrize("name, index", [("means", 0), ("quats", 1), ("scales", 2), ("opacities", 3), ("colors", 4)])
def test_gradcheck(name, index):
    scene = random_scene(6, 21, spread=0.5)
    cams = cameras(12, 10)

    def fn(x):
        inputs = list(scene)
        inputs[index] = x
        out = rasterize(
            *inputs, cams.viewmats, cams.Ks, 12, 10, background=torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
        )
        return out.rgb, out.alpha, out.depth

    x = scene[index].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True), name


def test_gradients_match_reference_autograd():
    scene = random_scene(50, 13)
    cams = cameras(25, 21)
    bg = torch.ones(3, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    w_rgb, w_alpha = (
        torch.randn(3, 21, 25, 3, generator=g, dtype=torch.float64),
        torch.randn(3, 21, 25, 1, generator=g, dtype=torch.float64),
    )

    fast_inputs = [t.clone().requires_grad_(True) for t in scene]
    out = rasterize(*fast_inputs, cams.viewmats, cams.Ks, 25, 21, background=bg)
    ((out.rgb * w_rgb).sum() + (out.alpha * w_alpha).sum()).backward()

    ref_inputs = [t.clone().requires_grad_(True) for t in scene]
    rgb, alpha, _ = render_reference(*ref_inputs, cams.viewmats, cams.Ks, 25, 21, bg)
    ((rgb * w_rgb.reshape(3, -1, 3)).sum() + (alpha * w_alpha.reshape(3, -1, 1)).sum()).backward()

    for name, a, b in zip(["means", "quats", "scales", "opacities", "colors"], fast_inputs, ref_inputs):
        assert b.grad.abs().max() > 0, name
        torch.testing.assert_close(a.grad, b.grad, atol=1e-9, rtol=1e-7, msg=name)


def test_render_on_white_with_screen_statistics():
    means, quats, scales, opacities, colors = random_scene(20, 2, dtype=torch.float32, spread=0.4)
    gaussians = Gaussians.from_activated(means, scales, quats, opacities, colors)
    gaussians.means.requires_grad_(True)
    cams = orbit_cameras(0.0, [0.0, 90.0], 1.5, width=32)
    out = render(gaussians, cams)
    assert out.rgb.shape == (2, 32, 32, 3) and out.alpha.shape == (2, 32, 32, 1) and out.depth.shape == (2, 32, 32, 1)
    assert out.means2d.shape == (2, 20, 2) and out.radii.shape == (2, 20, 2) and out.backend == "cpu"
    corner = out.rgb[:, 0, 0]
    torch.testing.assert_close(corner, torch.ones_like(corner))  # nothing there: white background
    out.means2d.retain_grad()
    out.rgb.sum().backward()
    assert out.means2d.grad is not None and out.means2d.grad[out.visible].abs().sum() > 0
    assert gaussians.means.grad.abs().sum() > 0


def test_empty_and_fully_culled_scenes_render_background():
    empty = Gaussians.empty()
    out = render(empty, orbit_cameras(0.0, 0.0, 1.5, width=8))
    torch.testing.assert_close(out.rgb, torch.ones(1, 8, 8, 3))
    torch.testing.assert_close(out.alpha, torch.zeros(1, 8, 8, 1))
    behind = Gaussians.from_activated(
        torch.tensor([[0.0, 0.0, 5.0]]),
        torch.full((1, 3), 0.1),
        torch.tensor([[1.0, 0, 0, 0]]),
        torch.tensor([0.9]),
        torch.zeros(1, 3),
    )
    out = render(behind, orbit_cameras(0.0, 0.0, 1.5, width=8))
    assert out.alpha.max() == 0 and (out.radii == 0).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: gsplat has no CPU rasterizer to compare with")
def test_cpu_matches_gsplat_on_cuda():
    scene = random_scene(500, 4, dtype=torch.float32)
    cams = orbit_cameras([0.0, 15.0], [0.0, 105.0], [1.5, 2.0], width=64, height=48)
    cpu_out = rasterize(*scene, cams.viewmats, cams.Ks, 64, 48, background=1.0, backend="cpu")
    gpu_scene = [t.cuda() for t in scene]
    gpu_out = rasterize(*gpu_scene, cams.viewmats.cuda(), cams.Ks.cuda(), 64, 48, background=1.0, backend="gsplat")
    assert gpu_out.backend == "gsplat"
    torch.testing.assert_close(gpu_out.rgb.cpu(), cpu_out.rgb, atol=1e-3, rtol=0)
    torch.testing.assert_close(gpu_out.alpha.cpu(), cpu_out.alpha, atol=1e-3, rtol=0)
    assert torch.equal(gpu_out.radii.cpu(), cpu_out.radii)
    # and gradients agree
    for backend, device in (("cpu", "cpu"), ("gsplat", "cuda")):
        inputs = [t.to(device).clone().requires_grad_(True) for t in scene]
        out = rasterize(*inputs, cams.viewmats.to(device), cams.Ks.to(device), 64, 48, background=1.0, backend=backend)
        (out.rgb.sum() + out.alpha.sum()).backward()
        grads = [i.grad.cpu() for i in inputs]
        if backend == "cpu":
            cpu_grads = grads
    for a, b in zip(cpu_grads, grads):
        torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-2)


def test_non_finite_gaussians_are_culled_not_crashing():
    scene = random_scene(30, 8, dtype=torch.float32)
    scene[0][3] = float("nan")
    scene[2][5] = float("inf")
    cams = orbit_cameras(0.0, [0.0, 90.0], 1.5, width=24)
    out = rasterize(*scene, cams.viewmats, cams.Ks, 24, 24, background=1.0)
    assert (out.radii[:, 3] == 0).all() and (out.radii[:, 5] == 0).all()
    assert torch.isfinite(out.rgb).all() and torch.isfinite(out.alpha).all()


@pytest.mark.parametrize("strip", [4, 8, 16])
def test_every_strip_width_gives_the_same_image_and_gradients(strip):
    from align4d_core.scene.render import cpu
    from align4d_core.scene.render.projection import project

    scene = [t.requires_grad_(True) for t in random_scene(40, 17, dtype=torch.float64)]
    cams = cameras(37, 21)
    proj = project(scene[0], scene[1], scene[2], scene[3], cams.viewmats, cams.Ks, 37, 21)
    colors = torch.cat([scene[4].expand(3, -1, -1), proj.depths[..., None]], dim=-1)
    opacities = scene[3].expand(3, -1)
    out, alpha, _ = cpu.rasterize(
        proj.means2d,
        proj.cov2d,
        proj.conics,
        proj.depths,
        proj.radii,
        opacities,
        colors,
        torch.ones(4, dtype=torch.float64),
        37,
        21,
        strip=strip,
    )
    (out.sum() + alpha.sum()).backward()
    reference = rasterize(*[t.detach() for t in scene], cams.viewmats, cams.Ks, 37, 21, background=1.0)
    torch.testing.assert_close(out[..., :3], reference.rgb, atol=1e-12, rtol=0)
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in scene)
