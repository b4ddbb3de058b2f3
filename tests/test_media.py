"""media.py: PNG and mp4 round trips, frame folders, masks, and every kind of bad input."""

from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from align4d_core.errors import InputError
from align4d_core.io import media, storage

Q = 1.0 / 255.0  # one 8-bit step


def smooth_video(t: int = 6, h: int = 32, w: int = 48) -> torch.Tensor:
    """Gradients that move over time: what H.264 compresses well."""
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    frames = []
    for k in range(t):
        phase = k / max(t, 1)
        red = 0.2 + 0.6 * x.expand(h, w)
        green = 0.2 + 0.6 * y.expand(h, w)
        blue = 0.5 + 0.3 * torch.sin(6 * (x + y) + phase)
        frames.append(torch.stack([red, green, blue], dim=-1))
    return torch.stack(frames).float()


def checker_alpha(h: int, w: int) -> torch.Tensor:
    alpha = torch.zeros(h, w, 1)
    alpha[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1.0
    alpha[0, :] = 0.5  # semi-transparent edge
    return alpha


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


# --- images ----------------------------------------------------------------------------------------


def test_png_rgb_round_trip(any_root: str) -> None:
    rgb = torch.rand(17, 23, 3)
    uri = storage.join(any_root, "img/rgb.png")
    media.write_image(uri, rgb)
    back, alpha = media.read_image(uri)
    assert alpha is None
    assert back.shape == (17, 23, 3) and back.dtype == torch.float32
    assert (back - rgb).abs().max() <= 0.5 * Q + 1e-6


def test_png_rgba_round_trip_keeps_composited_colour(any_root: str) -> None:
    alpha = checker_alpha(16, 20)
    rgb = media.composite_on_white(torch.rand(16, 20, 3), alpha)  # the convention: on white
    uri = storage.join(any_root, "rgba.png")
    media.write_image(uri, rgb, alpha)
    back, back_alpha = media.read_image(uri)
    assert back_alpha is not None and back_alpha.shape == (16, 20, 1)
    assert (back_alpha - alpha).abs().max() <= 0.5 * Q + 1e-6
    assert (back - rgb).abs().max() <= 1.5 * Q
    assert torch.all(back[alpha[..., 0] == 0] == 1.0)  # fully transparent reads as white
    with Image.open(io.BytesIO(storage.read_bytes(uri))) as im:
        assert im.mode == "RGBA"


def test_transparent_png_reads_composited_on_white(tmp_path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)  # black and fully transparent ...
    rgba[1:3, 1:3] = [255, 0, 0, 255]  # ... around an opaque red square
    (tmp_path / "cut.png").write_bytes(png_bytes(rgba))
    rgb, alpha = media.read_image(str(tmp_path / "cut.png"))
    assert torch.equal(rgb[0, 0], torch.ones(3))
    assert torch.equal(rgb[1, 1], torch.tensor([1.0, 0.0, 0.0]))
    assert alpha is not None and alpha[0, 0, 0] == 0 and alpha[1, 1, 0] == 1


def test_png_bytes_are_deterministic(tmp_path) -> None:
    rgb, alpha = torch.rand(8, 8, 3), torch.rand(8, 8, 1)
    media.write_image(str(tmp_path / "a.png"), rgb, alpha)
    media.write_image(str(tmp_path / "b.png"), rgb.clone(), alpha.clone())
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_grayscale_image_reads_as_rgb(tmp_path) -> None:
    (tmp_path / "g.png").write_bytes(png_bytes(np.full((3, 5), 128, np.uint8)))
    rgb, alpha = media.read_image(str(tmp_path / "g.png"))
    assert rgb.shape == (3, 5, 3) and alpha is None
    assert torch.allclose(rgb, torch.full((3, 5, 3), 128 / 255))


def test_composite_on_white() -> None:
    rgb = torch.tensor([[[0.0, 0.5, 1.0]]])
    alpha = torch.tensor([[[0.5]]])
    assert torch.allclose(media.composite_on_white(rgb, alpha), torch.tensor([[[0.5, 0.75, 1.0]]]))


# --- masks -----------------------------------------------------------------------------------------


def test_mask_from_grayscale_alpha_and_opaque_rgba(tmp_path) -> None:
    gray = np.array([[0, 255], [128, 64]], np.uint8)
    (tmp_path / "l.png").write_bytes(png_bytes(gray))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = gray  # a cut-out: the alpha is the mask
    (tmp_path / "cut.png").write_bytes(png_bytes(rgba))
    opaque = np.concatenate([np.repeat(gray[..., None], 3, -1), np.full((2, 2, 1), 255, np.uint8)], -1)
    (tmp_path / "opaque.png").write_bytes(png_bytes(opaque))  # black/white mask saved as RGBA
    (tmp_path / "g16.png").write_bytes(png_bytes(gray.astype(np.uint16) * 257))

    expected = torch.from_numpy(gray / 255.0).float()[..., None]
    for name in ("l.png", "cut.png", "opaque.png", "g16.png"):
        mask = media.read_mask(str(tmp_path / name))
        assert mask.shape == (2, 2, 1), name
        assert torch.allclose(mask, expected, atol=1e-3), name


def test_mask_round_trip_and_masks_folder(any_root: str) -> None:
    masks = (torch.rand(3, 8, 6, 1) > 0.5).float()
    media.write_mask(storage.join(any_root, "one.png"), masks[0])
    assert torch.equal(media.read_mask(storage.join(any_root, "one.png")), masks[0])
    media.write_masks(storage.join(any_root, "masks"), masks)
    assert torch.equal(media.read_masks(storage.join(any_root, "masks")), masks)


def test_masks_from_mp4(tmp_path) -> None:
    masks = torch.zeros(4, 32, 32, 1)
    masks[:, 8:24, 8:24] = 1.0
    media.write_video(str(tmp_path / "m.mp4"), masks.expand(-1, -1, -1, 3).contiguous(), fps=8)
    back = media.read_masks(str(tmp_path / "m.mp4"))
    assert back.shape == (4, 32, 32, 1)
    assert (back - masks).abs().mean() < 0.03


# --- videos ----------------------------------------------------------------------------------------


def test_mp4_round_trip(any_root: str) -> None:
    frames = smooth_video()
    uri = storage.join(any_root, "v/video.mp4")
    media.write_video(uri, frames, fps=12)
    video = media.read_video(uri)
    assert video.frames.shape == frames.shape and video.frames.dtype == torch.float32
    assert video.fps == pytest.approx(12.0)
    assert video.alpha is None
    assert (video.frames - frames).abs().mean() < 0.03
    assert (video.num_frames, video.height, video.width) == (6, 32, 48)


def test_mp4_bytes_are_deterministic(tmp_path) -> None:
    frames = smooth_video(t=5)
    media.write_video(str(tmp_path / "a.mp4"), frames, fps=10)
    media.write_video(str(tmp_path / "b.mp4"), frames.clone(), fps=10)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert b"Lavf" not in (tmp_path / "a.mp4").read_bytes()  # no encoder version string


def test_mp4_odd_size_is_padded_with_white_not_resized(tmp_path) -> None:
    frames = smooth_video(t=3, h=31, w=45)
    media.write_video(str(tmp_path / "odd.mp4"), frames, fps=5)
    video = media.read_video(str(tmp_path / "odd.mp4"))
    assert video.frames.shape == (3, 32, 46, 3)
    assert (video.frames[:, :31, :45] - frames).abs().mean() < 0.03
    assert video.frames[:, 31, :40].mean() > 0.9  # the padding row is white


def test_frames_folder_round_trip_with_alpha(any_root: str) -> None:
    alpha = checker_alpha(12, 10).expand(3, -1, -1, -1).contiguous()
    frames = media.composite_on_white(torch.rand(3, 12, 10, 3), alpha)
    folder = storage.join(any_root, "frames")
    uris = media.write_frames(folder, frames, alpha)
    assert [u.rsplit("/", 1)[1] for u in uris] == ["0.png", "1.png", "2.png"]
    video = media.read_video(folder)
    assert video.fps is None and video.alpha is not None
    assert (video.alpha - alpha).abs().max() <= 0.5 * Q + 1e-6
    assert (video.frames - frames).abs().max() <= 1.5 * Q


def test_frames_sort_numerically(tmp_path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(12):  # frame t has grey level t/20: 2.png must come before 10.png
        (folder / f"{t}.png").write_bytes(png_bytes(np.full((2, 2, 3), round(255 * t / 20), np.uint8)))
    assert media.list_frames(str(folder))[:4] == ["0.png", "1.png", "2.png", "3.png"]
    video = media.read_video(str(folder))
    levels = video.frames[:, 0, 0, 0]
    assert torch.all(levels[1:] > levels[:-1])


@pytest.mark.parametrize("pattern", ["{:03d}.png", "frame_{}.png", "img{:05d}.PNG"])
def test_frame_names_zero_padded_or_prefixed(tmp_path, pattern: str) -> None:
    for t in (1, 2, 3):  # any start index; hidden files are ignored
        (tmp_path / pattern.format(t)).write_bytes(png_bytes(np.full((2, 2, 3), 10 * t, np.uint8)))
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    names = media.list_frames(str(tmp_path))
    assert names == [pattern.format(t) for t in (1, 2, 3)]
    assert media.read_video(str(tmp_path)).num_frames == 3


def test_rgba_and_rgb_frames_mix_to_opaque_alpha(tmp_path) -> None:
    (tmp_path / "0.png").write_bytes(png_bytes(np.zeros((2, 2, 3), np.uint8)))
    (tmp_path / "1.png").write_bytes(png_bytes(np.zeros((2, 2, 4), np.uint8)))
    video = media.read_video(str(tmp_path))
    assert video.alpha is not None
    assert torch.equal(video.alpha[0], torch.ones(2, 2, 1))  # the RGB frame is opaque
    assert torch.equal(video.alpha[1], torch.zeros(2, 2, 1))


def test_write_frames_removes_stale_frames(memory_root: str) -> None:
    folder = storage.join(memory_root, "f")
    media.write_frames(folder, torch.rand(5, 4, 4, 3))
    media.write_frames(folder, torch.rand(2, 4, 4, 3))
    assert storage.listdir(folder) == ["0.png", "1.png"]
    assert media.read_video(folder).num_frames == 2


def test_mp4_on_s3(s3_bucket: str) -> None:
    frames = smooth_video(t=4)
    uri = storage.join(s3_bucket, "out/turntable.mp4")
    media.write_video(uri, frames, fps=24)
    assert media.read_video(uri).frames.shape == frames.shape


# --- bad input ---------------------------------------------------------------------------------------


def assert_input_error(exc: pytest.ExceptionInfo, uri: str, *reason_words: str) -> None:
    assert isinstance(exc.value, InputError)
    message = str(exc.value)
    assert uri in message, message
    for word in reason_words:
        assert word in message, message


def test_missing_files(any_root: str) -> None:
    for read in (media.read_image, media.read_mask):
        uri = storage.join(any_root, "missing.png")
        with pytest.raises(InputError) as exc:
            read(uri)
        assert_input_error(exc, uri, "not found")
    for uri in (storage.join(any_root, "missing.mp4"), storage.join(any_root, "no-folder")):
        with pytest.raises(InputError) as exc:
            media.read_video(uri)
        assert_input_error(exc, uri, "not found")


def test_truncated_corrupt_and_empty_png(tmp_path) -> None:
    good = png_bytes((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    cases = {"truncated.png": good[: len(good) // 2], "garbage.png": b"not an image at all", "empty.png": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    for name, word in [("truncated.png", "truncated"), ("garbage.png", "not an image"), ("empty.png", "empty")]:
        with pytest.raises(InputError) as exc:
            media.read_image(str(tmp_path / name))
        assert_input_error(exc, name, word)


def test_truncated_mp4(tmp_path) -> None:
    media.write_video(str(tmp_path / "full.mp4"), smooth_video(t=10), fps=10)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: lost
    with pytest.raises(InputError) as exc:
        media.read_video(str(tmp_path / "cut.mp4"))
    assert_input_error(exc, "cut.mp4", "truncated")

    # index at the front (faststart): ffmpeg decodes the first frames without complaint
    full, faststart = str(tmp_path / "full.mp4"), str(tmp_path / "fs.mp4")
    ffmpeg("-i", full, "-c", "copy", "-movflags", "+faststart", faststart)
    data = (tmp_path / "fs.mp4").read_bytes()
    (tmp_path / "fs-cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as exc:
        media.read_video(str(tmp_path / "fs-cut.mp4"))
    assert_input_error(exc, "fs-cut.mp4", "truncated")


def test_garbage_and_zero_frame_mp4(tmp_path) -> None:
    (tmp_path / "garbage.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError) as exc:
        media.read_video(str(tmp_path / "garbage.mp4"))
    assert_input_error(exc, "garbage.mp4", "unreadable mp4", "not an mp4")

    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=white:s=16x16:d=1",
        "-frames:v",
        "0",
        "-c:v",
        "libx264",
        str(tmp_path / "zero.mp4"),
    )
    with pytest.raises(InputError) as exc:
        media.read_video(str(tmp_path / "zero.mp4"))
    assert_input_error(exc, "zero.mp4", "no frames")


def test_empty_frame_folder(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden").write_bytes(b"")
    with pytest.raises(InputError) as exc:
        media.read_video(str(tmp_path / "empty"))
    assert_input_error(exc, "empty", "no frames")


def test_mixed_frame_sizes_name_the_frame(tmp_path) -> None:
    (tmp_path / "0.png").write_bytes(png_bytes(np.zeros((4, 4, 3), np.uint8)))
    (tmp_path / "1.png").write_bytes(png_bytes(np.zeros((4, 6, 3), np.uint8)))
    with pytest.raises(InputError) as exc:
        media.read_video(str(tmp_path))
    assert_input_error(exc, str(tmp_path), "'1.png' is 6x4", "'0.png' is 4x4")
    with pytest.raises(InputError, match="different sizes"):
        media.read_masks(str(tmp_path))


@pytest.mark.parametrize(
    ("names", "words"),
    [
        (["0.png", "1.png", "notes.txt"], ["'notes.txt' is not a PNG frame"]),
        (["0.png", "1.png", "frame.jpg"], ["'frame.jpg' is not a PNG frame"]),
        (["0.png", "1.png", "3.png"], ["frame 2 is missing"]),
        (["1.png", "01.png"], ["two frames with index 1"]),
        (["a0.png", "b1.png"], ["one pattern"]),
    ],
)
def test_bad_frame_folders(tmp_path, names: list[str], words: list[str]) -> None:
    for name in names:
        (tmp_path / name).write_bytes(png_bytes(np.zeros((2, 2, 3), np.uint8)))
    with pytest.raises(InputError) as exc:
        media.read_video(str(tmp_path))
    assert_input_error(exc, str(tmp_path), *words)


def test_not_a_video(tmp_path) -> None:
    (tmp_path / "clip.avi").write_bytes(b"whatever")
    with pytest.raises(InputError) as exc:
        media.read_video(str(tmp_path / "clip.avi"))
    assert_input_error(exc, "clip.avi", "not a video")


# --- writers refuse tensors that are not images, and leave nothing behind ----------------------------


@pytest.mark.parametrize(
    ("rgb", "words"),
    [
        (torch.full((4, 4, 3), float("nan")), "NaN"),
        (torch.full((4, 4, 3), float("inf")), "NaN or infinite"),
        (torch.rand(4, 4), "shape"),
        (torch.rand(4, 4, 4), "shape"),
        (torch.rand(1, 4, 4, 3), "shape"),
        (torch.full((4, 4, 3), 1.5), "[0, 1]"),
        (torch.full((4, 4, 3), -0.2), "[0, 1]"),
        (torch.zeros(4, 4, 3, dtype=torch.uint8), "float"),
    ],
)
def test_write_image_refuses_bad_tensors(tmp_path, rgb: torch.Tensor, words: str) -> None:
    uri = str(tmp_path / "x.png")
    with pytest.raises(ValueError, match=None) as exc:
        media.write_image(uri, rgb)
    assert words in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_write_image_checks_alpha_and_suffix(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not match"):
        media.write_image(str(tmp_path / "x.png"), torch.rand(4, 4, 3), torch.rand(4, 5, 1))
    with pytest.raises(ValueError, match=".png"):
        media.write_image(str(tmp_path / "x.jpg"), torch.rand(4, 4, 3))
    assert list(tmp_path.iterdir()) == []


def test_tiny_overshoot_is_clamped(tmp_path) -> None:
    media.write_image(str(tmp_path / "x.png"), torch.full((2, 2, 3), 1.0 + 1e-5))
    assert torch.equal(media.read_image(str(tmp_path / "x.png"))[0], torch.ones(2, 2, 3))


def test_write_video_refuses_bad_input_and_leaves_nothing(tmp_path) -> None:
    bad = smooth_video(t=3)
    bad[2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        media.write_video(str(tmp_path / "v.mp4"), bad, fps=10)
    with pytest.raises(ValueError, match="shape"):
        media.write_video(str(tmp_path / "v.mp4"), torch.rand(4, 4, 3), fps=10)
    with pytest.raises(ValueError, match="fps"):
        media.write_video(str(tmp_path / "v.mp4"), smooth_video(t=2), fps=0)
    with pytest.raises(ValueError, match=".mp4"):
        media.write_video(str(tmp_path / "v.avi"), smooth_video(t=2), fps=10)
    assert list(tmp_path.iterdir()) == []


def test_write_frames_checks_everything_before_writing(memory_root: str) -> None:
    folder = storage.join(memory_root, "frames")
    alpha = torch.rand(3, 4, 4, 1)
    alpha[2] = float("nan")
    with pytest.raises(ValueError, match="alpha"):
        media.write_frames(folder, torch.rand(3, 4, 4, 3), alpha)
    with pytest.raises(ValueError, match="empty"):
        media.write_frames(folder, torch.rand(0, 4, 4, 3))
    assert storage.listdir(folder) == []
