"""viewer.html in headless Chromium (WebGL2 through SwiftShader), against our CPU renderer.

The page is the project's own WebGL2 splat renderer; it must draw what ``scene.render`` draws at the
same camera and frame: the VAOD front view, an evaluation view, and another frame after the time
slider moved. Screenshots of each comparison (page | CPU) are kept in ``test-artifacts/``.
"""

from __future__ import annotations

import base64
import io
import math
import time

import browser as browser_module
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from align4d.cli import app
from align4d_core.config import DeformationConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.media import write_video
from align4d_core.io.ply import write_gaussians_ply
from align4d_core.pipeline.viewer import VIEWER, check_object_folder, viewer_data, write_viewer_of
from align4d_core.scene.cameras import orbit_cameras
from align4d_core.scene.deformation import DeformationField, deform, save_deformation
from align4d_core.scene.gaussians import Gaussians
from align4d_core.scene.render import render

FRAMES, DISTANCE, FOVY, SIZE = 4, 2.2, 49.1, 192
PSNR_GOAL = 25.0  # issue 14's bar; the page reaches ~60 dB on these scenes (the test asserts 35)


def moving_object(n: int, seed: int = 0) -> tuple[Gaussians, DeformationField]:
    """A coloured ball of Gaussians whose field moves every frame visibly."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = direction * (0.25 + 0.25 * torch.rand(n, 1, generator=g))
    canonical = Gaussians(
        means=means,
        log_scales=torch.rand(n, 3, generator=g) * 0.8 - 4.0,
        quats=torch.randn(n, 4, generator=g),
        opacity_logits=torch.randn(n, generator=g) + 1.5,
        sh0=(means * 3.0).clamp(-1.5, 1.5),
    )
    torch.manual_seed(seed)
    field = DeformationField.from_gaussians(canonical, FRAMES, DeformationConfig(feature_dim=4, spatial_resolution=4))
    with torch.no_grad():
        for head, size in ((field.position, 0.15), (field.rotation, 0.1), (field.scale, 0.1)):
            head[-1].bias.copy_(torch.randn(head[-1].bias.shape, generator=g) * size)
            head[-1].weight.copy_(torch.randn(head[-1].weight.shape, generator=g) * size)
        for plane in field.grid.parameters():  # time-varying features: each frame moves differently
            plane.add_(torch.randn(plane.shape, generator=g) * 0.5)
    return canonical, field


def write_object(folder: str, canonical: Gaussians, field: DeformationField) -> None:
    """An object folder as pipeline/export.py lays it out (the files the viewer reads)."""
    write_gaussians_ply(storage.join(folder, "object/canonical.ply"), canonical, sh_degree=0)
    save_deformation(
        storage.join(folder, "object/deformation.safetensors"),
        field,
        {"distance": DISTANCE, "fovy_deg": FOVY, "fps": 4.0},
    )
    video = torch.linspace(0.2, 0.9, FRAMES)[:, None, None, None].expand(FRAMES, 32, 48, 3).contiguous()
    write_video(storage.join(folder, "videos/front_vs_input.mp4"), torch.cat([video, video], dim=2), fps=4.0)


def cpu_render(canonical: Gaussians, field: DeformationField, azimuth: float, frame: int) -> np.ndarray:
    with torch.no_grad():
        frames = deform(canonical, field, torch.tensor([frame]), FRAMES)
        cameras = orbit_cameras(0.0, azimuth, DISTANCE, width=SIZE, fovy_deg=FOVY)
        rgb = render(frames, cameras, background=1.0).rgb[0].clamp(0.0, 1.0).numpy()
    return np.round(rgb * 255.0) / 255.0  # what a PNG of it holds


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10.0 * math.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-12))


@pytest.fixture(scope="module")
def browser():
    driver = browser_module.chromium(*browser_module.WEBGL, window="1200,900")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("viewer") / "object")
    canonical, field = moving_object(1500)
    write_object(folder, canonical, field)
    info = write_viewer_of(folder)
    return folder, canonical, field, info


def open_viewer(driver, path: str, timeout: float = 60.0) -> list[dict]:
    driver.get_log("browser")
    driver.get("file://" + path)
    deadline = time.time() + timeout
    while not driver.execute_script("return !!(window.align4dViewer && window.align4dViewer.view)"):
        assert time.time() < deadline, "the viewer never started: " + str(driver.get_log("browser"))
        time.sleep(0.2)
    return driver.get_log("browser")


def capture(driver) -> np.ndarray:
    url = driver.execute_script("return window.align4dViewer.capture()")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return np.asarray(image, dtype=np.float64) / 255.0


def keep(name: str, page: np.ndarray, reference: np.ndarray) -> None:
    browser_module.ARTIFACTS.mkdir(exist_ok=True)
    both = np.concatenate([page, reference], axis=1)
    Image.fromarray((both * 255.0 + 0.5).astype(np.uint8)).save(browser_module.ARTIFACTS / f"viewer-{name}.png")


def test_the_page_draws_what_the_cpu_renderer_draws(browser, scene):
    folder, canonical, field, info = scene
    log = open_viewer(browser, storage.join(folder, VIEWER))
    assert [entry for entry in log if entry["level"] == "SEVERE"] == []
    assert info["gaussians"] == 1500 and info["frames"] == FRAMES
    state = browser.execute_script("const v = window.align4dViewer; return [v.view.azimuth, v.view.distance]")
    assert state == [0, pytest.approx(DISTANCE)]  # it starts at the VAOD front camera

    browser.execute_script(f"window.align4dViewer.setSize({SIZE}, {SIZE})")
    reached = {}
    for name, azimuth, frame in (("vaod-front", 0.0, 0), ("eval-15", 15.0, 0), ("eval-105-frame-2", 105.0, 2)):
        browser.execute_script(
            "const v = window.align4dViewer;"
            f"v.setCamera({{azimuth: {azimuth}, elevation: 0, distance: {DISTANCE}, target: [0, 0, 0]}});"
            f"v.setFrame({frame});"
        )
        page, reference = capture(browser), cpu_render(canonical, field, azimuth, frame)
        keep(name, page, reference)
        assert (page < 0.9).mean() > 0.02, f"{name}: the canvas is (nearly) blank"
        reached[name] = psnr(page, reference)
    print("viewer PSNR against the CPU renderer:", {k: round(v, 2) for k, v in reached.items()})
    assert min(reached.values()) >= max(PSNR_GOAL, 35.0), reached


def test_the_time_slider_changes_the_picture(browser, scene):
    folder, canonical, field, _ = scene
    open_viewer(browser, storage.join(folder, VIEWER))
    browser.execute_script(f"window.align4dViewer.setSize({SIZE}, {SIZE})")
    first = capture(browser)
    browser.execute_script(  # what a person's drag of the slider does
        "const s = document.getElementById('align4d-time'); s.value = '3';"
        "s.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    assert browser.execute_script("return window.align4dViewer.view.frame") == 3
    last = capture(browser)
    assert np.abs(first - last).max() > 0.2  # the object moved
    to_frame_3, to_frame_0 = (
        psnr(last, cpu_render(canonical, field, 0.0, 3)),
        psnr(last, cpu_render(canonical, field, 0.0, 0)),
    )
    assert to_frame_3 >= 35.0 and to_frame_3 > to_frame_0 + 10.0, (to_frame_3, to_frame_0)  # frame 3, not 0
    label = browser.find_element("id", "align4d-frame").text
    assert label == f"frame 4 / {FRAMES}"


def test_dragging_orbits_and_the_view_buttons_reset(browser, scene):
    from selenium.webdriver.common.action_chains import ActionChains

    folder, *_ = scene
    open_viewer(browser, storage.join(folder, VIEWER))
    canvas = browser.find_element("id", "align4d-canvas")
    ActionChains(browser).move_to_element(canvas).click_and_hold().move_by_offset(50, 0).release().perform()
    assert browser.execute_script("return window.align4dViewer.view.azimuth") == pytest.approx(-20.0, abs=2.0)
    browser.find_element("css selector", "button[data-azimuth='105']").click()
    assert browser.execute_script("return window.align4dViewer.view.azimuth") == 105
    assert browser.find_element("id", "align4d-input").get_attribute("src").startswith("data:image/jpeg;base64,")


def test_a_huge_object_is_subsampled_to_the_cap_and_still_opens(browser, tmp_path):
    folder = str(tmp_path / "huge")
    canonical, field = moving_object(500_000, seed=3)
    write_object(folder, canonical, field)
    started = time.perf_counter()
    info = write_viewer_of(folder, max_gaussians=100_000)
    written = time.perf_counter() - started
    assert (info["gaussians"], info["total"]) == (100_000, 500_000)
    open_viewer(browser, storage.join(folder, VIEWER), timeout=120)
    status = browser.find_element("id", "align4d-status").text
    assert "100,000 of 500,000 Gaussians" in status
    assert (capture(browser) < 0.9).mean() > 0.02
    print(f"500k Gaussians: page written in {written:.1f} s, {info['bytes'] / 2**20:.1f} MiB")


def test_the_cap_keeps_the_most_prominent_gaussians():
    canonical, field = moving_object(300)
    data = viewer_data(canonical, field, FRAMES, max_gaussians=50)
    importance = canonical.opacities * torch.exp(canonical.log_scales.sum(dim=-1))
    expected = torch.topk(importance, 50).indices.sort().values
    assert np.array_equal(data.means, canonical.means[expected].numpy())
    assert data.d_means.dtype == np.float16 and data.d_means.shape == (FRAMES, 50, 3)
    with torch.no_grad():
        moved = deform(canonical, field, torch.arange(FRAMES), FRAMES)
    offsets = (moved.means - canonical.means)[:, expected].numpy()
    assert np.abs(data.d_means.astype(np.float32) - offsets).max() < 1e-3  # float16 of offsets under 0.5


def test_a_folder_that_is_not_a_4d_object_is_refused_by_name(tmp_path):
    (tmp_path / "object").mkdir()
    (tmp_path / "object" / "canonical.ply").write_bytes(b"ply\n")
    with pytest.raises(InputError, match=r"object/deformation\.safetensors missing"):
        check_object_folder(str(tmp_path))
    result = CliRunner().invoke(app, ["view", str(tmp_path), "--no-open"])
    assert result.exit_code == 2 and "not a 4D object folder" in result.output
    missing = CliRunner().invoke(app, ["view", str(tmp_path / "nowhere"), "--no-open"])
    assert missing.exit_code == 2 and "folder not found" in missing.output


def test_view_command_writes_the_page_of_an_object_folder(scene):
    folder, *_ = scene
    storage.remove(storage.join(folder, VIEWER))
    result = CliRunner().invoke(app, ["view", folder, "--no-open"])
    assert result.exit_code == 0, result.output
    assert storage.exists(storage.join(folder, VIEWER)) and "1,500 Gaussians, 4 frames" in result.output
