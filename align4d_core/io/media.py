"""Images, alpha masks and videos on URIs (DESIGN.md §2–§4).

Conventions, so that every module agrees:

* Tensors are float32 in [0, 1]: RGB ``(H, W, 3)``, alpha and masks ``(H, W, 1)``; videos
  ``(T, H, W, 3)`` and ``(T, H, W, 1)``. RGB is *composited on white* (DESIGN.md §4): readers
  return ``rgb * a + (1 - a)`` for a file with transparency, so that nobody has to remember to
  composite (transparent PNG pixels often hold black). PNG files store the usual straight colour:
  :func:`write_image` un-composites before saving, so the file looks right in any viewer and a
  write/read round trip returns the same tensors (to 8-bit precision).
* A video is an ``.mp4`` file or a folder of PNG frames. Frames are ordered by the integer at the
  end of their name (``0.png, 1.png, ..., 10.png``, or zero-padded ``000.png``, or ``frame_7.png``
  with one common prefix). The indices must be consecutive: a gap usually means an interrupted
  copy, and silently shifting time would give a wrong result. Hidden files (``.*``) are ignored;
  any other file in a frame folder is refused, so a stray file never becomes a frame or is lost
  unnoticed. :func:`write_frames` writes ``<t>.png`` with ``t = 0..T-1`` and no zero padding.
* A mask file gives its alpha channel when it has one that is not fully opaque, else its
  luminance. This reads both grayscale masks and RGBA cut-outs (background removal output), and an
  RGBA mask saved with an opaque alpha channel still reads as its black/white content.
* mp4 files are H.264 (libx264, yuv420p, CRF 18, 4 encoder threads, bit-exact muxing), so that
  equal frames give equal bytes on any machine. yuv420p needs even sizes: odd widths/heights are
  padded with white on the right/bottom, never rescaled.

Bad input raises :class:`~align4d_core.errors.InputError` naming the file and the reason. Tensors
given to writers that are not images (wrong shape or dtype, NaN, outside [0, 1]) raise
``ValueError``: that is a bug in the caller, not a file a user must fix. Every file is written
atomically through :mod:`align4d_core.io.storage`.
"""

from __future__ import annotations

import io
import posixpath
import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from align4d_core.errors import InputError
from align4d_core.io import storage

__all__ = [
    "VIDEO_SUFFIX",
    "Video",
    "composite_on_white",
    "decode_image",
    "list_frames",
    "open_image",
    "read_image",
    "read_mask",
    "read_masks",
    "read_video",
    "write_frames",
    "write_image",
    "write_mask",
    "write_masks",
    "write_video",
]

VIDEO_SUFFIX = ".mp4"
_RANGE_TOLERANCE = 1e-3  # float renders may overshoot [0, 1] by rounding; more is a caller's bug
_FRAME_NAME = re.compile(r"^(?P<prefix>.*?)(?P<index>\d+)\.png$", re.IGNORECASE)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as Pillow's "L" conversion
# Fixed encoder settings: bit-exact muxing (no encoder version string or creation time) and a fixed
# thread count (x264's output depends on it), so equal input gives equal bytes everywhere.
_X264_PARAMS = [
    "-crf",
    "18",
    "-preset",
    "medium",
    "-threads",
    "4",
    "-fflags",
    "+bitexact",
    "-flags:v",
    "+bitexact",
    "-map_metadata",
    "-1",
]


@dataclass
class Video:
    """Frames of one video; ``alpha`` only for PNG frames with transparency, ``fps`` only for mp4."""

    frames: Tensor  # (T, H, W, 3) float32 in [0, 1], composited on white
    alpha: Tensor | None = None  # (T, H, W, 1) float32 in [0, 1]
    fps: float | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])


def composite_on_white(rgb: Tensor, alpha: Tensor) -> Tensor:
    """``rgb * alpha + (1 - alpha)``: straight colour over a white background (shapes broadcast)."""
    return rgb * alpha + (1.0 - alpha)


# --- reading -------------------------------------------------------------------------------------


def read_image(uri: str) -> tuple[Tensor, Tensor | None]:
    """``(rgb (H, W, 3), alpha (H, W, 1) or None)``; rgb composited on white where alpha exists.

    Reads what Pillow decodes (PNG, and JPEG/WebP for convenience); alpha comes from an alpha
    channel or a PNG transparency entry.
    """
    return decode_image(storage.read_bytes(uri), uri)


def decode_image(data: bytes, uri: str) -> tuple[Tensor, Tensor | None]:
    """:func:`read_image` of bytes already read (``uri`` names them in errors)."""
    with open_image(uri, data) as im:
        rgb, alpha = _pil_to_rgb_alpha(im)
    rgb_t = torch.from_numpy(rgb)
    if alpha is None:
        return rgb_t, None
    alpha_t = torch.from_numpy(alpha)
    return composite_on_white(rgb_t, alpha_t), alpha_t


def read_mask(uri: str) -> Tensor:
    """A mask ``(H, W, 1)``: the alpha channel if it is not fully opaque, else the luminance."""
    with open_image(uri) as im:
        return torch.from_numpy(_pil_to_mask(im))


def read_video(uri: str) -> Video:
    """An ``.mp4`` file or a folder of PNG frames (see the module notes for names and order)."""
    kind = _video_kind(uri)
    if kind == "mp4":
        frames, fps = _read_mp4(uri)
        return Video(frames=torch.from_numpy(frames).float().div_(255.0), alpha=None, fps=fps)
    names = list_frames(uri)
    rgbs: list[np.ndarray] = []
    alphas: list[np.ndarray | None] = []
    for name in names:
        with open_image(storage.join(uri, name)) as im:
            rgb, alpha = _pil_to_rgb_alpha(im)
        _check_same_size(uri, names, rgbs, name, rgb)
        rgbs.append(rgb)
        alphas.append(alpha)
    frames = torch.from_numpy(np.stack(rgbs))
    if all(a is None for a in alphas):
        return Video(frames=frames, alpha=None, fps=None)
    ones = np.ones(rgbs[0].shape[:2] + (1,), np.float32)  # opaque frames beside transparent ones
    alpha_t = torch.from_numpy(np.stack([ones if a is None else a for a in alphas]))
    return Video(frames=composite_on_white(frames, alpha_t), alpha=alpha_t, fps=None)


def read_masks(uri: str) -> Tensor:
    """Masks ``(T, H, W, 1)`` from a folder of PNG masks (rule of :func:`read_mask`) or an mp4."""
    if _video_kind(uri) == "mp4":
        frames, _ = _read_mp4(uri)
        luma = frames.astype(np.float32) @ np.asarray(_LUMA, np.float32)
        return torch.from_numpy(luma[..., None] / 255.0)
    names = list_frames(uri)
    masks: list[np.ndarray] = []
    for name in names:
        with open_image(storage.join(uri, name)) as im:
            mask = _pil_to_mask(im)
        _check_same_size(uri, names, masks, name, mask)
        masks.append(mask)
    return torch.from_numpy(np.stack(masks))


def list_frames(uri: str) -> list[str]:
    """The PNG frame names in a folder, in time order; InputError if they do not form a video."""
    if not storage.isdir(uri):
        reason = "not a folder of PNG frames" if storage.exists(uri) else "folder not found"
        raise InputError(reason, uri=uri)
    indexed: dict[int, str] = {}
    prefix: tuple[str, str] | None = None  # (prefix, the name that set it)
    for name in storage.listdir(uri):
        if name.startswith("."):
            continue
        match = _FRAME_NAME.match(name)
        if match is None:
            raise InputError(
                f"{name!r} is not a PNG frame; a frame folder holds only <t>.png files (hidden files are ignored)",
                uri=uri,
            )
        if prefix is None:
            prefix = (match["prefix"], name)
        elif match["prefix"] != prefix[0]:
            raise InputError(f"frame names do not follow one pattern: {prefix[1]!r} and {name!r}", uri=uri)
        index = int(match["index"])
        if index in indexed:
            raise InputError(f"two frames with index {index}: {indexed[index]!r} and {name!r}", uri=uri)
        indexed[index] = name
    if not indexed:
        raise InputError("no frames: the folder holds no PNG files", uri=uri)
    order = sorted(indexed)
    for previous, index in zip(order, order[1:]):
        if index != previous + 1:
            raise InputError(
                f"frame {previous + 1} is missing (frames go from {indexed[previous]!r} "
                f"to {indexed[index]!r}); frame indices must be consecutive",
                uri=uri,
            )
    return [indexed[i] for i in order]


class open_image:  # noqa: N801 (a context manager used like a function)
    """``with open_image(uri) as im``: a fully loaded Pillow image, or InputError with the reason.

    ``data``: the file's bytes when the caller has read them already.
    """

    def __init__(self, uri: str, data: bytes | None = None) -> None:
        self.uri = uri
        self.data = data
        self.image: Image.Image | None = None

    def __enter__(self) -> Image.Image:
        data = storage.read_bytes(self.uri) if self.data is None else self.data
        if not data:
            raise InputError("empty file, an image was expected", uri=self.uri)
        try:
            self.image = Image.open(io.BytesIO(data))
            self.image.load()  # Pillow decodes lazily: truncation only shows here
        except Image.DecompressionBombError as exc:
            raise InputError(f"image too large to decode safely ({exc})", uri=self.uri) from None
        except UnidentifiedImageError:
            raise InputError("not an image file (format not recognised)", uri=self.uri) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InputError(f"truncated or corrupt image ({exc})", uri=self.uri) from None
        return self.image

    def __exit__(self, *exc_info: object) -> None:
        if self.image is not None:
            self.image.close()


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info


def _gray16(im: Image.Image) -> np.ndarray | None:
    """16/32-bit grayscale (mode I;16 or I) as float (H, W) in [0, 1]; None for other modes."""
    if im.mode.startswith("I"):
        return np.clip(np.asarray(im, dtype=np.float32) / 65535.0, 0.0, 1.0)
    return None


def _pil_to_rgb_alpha(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Straight (not composited) RGB (H, W, 3) and alpha (H, W, 1) or None, float32."""
    gray = _gray16(im)
    if gray is not None:
        return np.repeat(gray[..., None], 3, axis=-1), None
    if _has_alpha(im):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3:])
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0, None


def _pil_to_mask(im: Image.Image) -> np.ndarray:
    gray = _gray16(im)
    if gray is not None:
        return gray[..., None]
    if _has_alpha(im):
        alpha = np.asarray(im.convert("RGBA"), dtype=np.uint8)[..., 3]
        if alpha.min() < 255:
            return (alpha.astype(np.float32) / 255.0)[..., None]
    return (np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[..., None]


def _check_same_size(uri: str, names: list[str], done: list[np.ndarray], name: str, new: np.ndarray) -> None:
    if done and done[0].shape[:2] != new.shape[:2]:
        (h0, w0), (h, w) = done[0].shape[:2], new.shape[:2]
        raise InputError(
            f"frames have different sizes: {name!r} is {w}x{h} but {names[0]!r} is {w0}x{h0} "
            "(width x height); all frames of a video must have one size",
            uri=uri,
        )


def _video_kind(uri: str) -> str:
    """'mp4' or 'frames'; InputError for a missing path or anything else."""
    if storage.isdir(uri):
        return "frames"
    if not storage.exists(uri):
        raise InputError("video not found", uri=uri)
    if posixpath.splitext(str(uri))[1].lower() == VIDEO_SUFFIX:
        return "mp4"
    raise InputError("not a video: expected an .mp4 file or a folder of PNG frames", uri=uri)


def _read_mp4(uri: str) -> tuple[np.ndarray, float | None]:
    """uint8 frames (T, H, W, 3) and the frame rate, with truncation and empty files refused."""
    import imageio.v2 as imageio  # imported here: ffmpeg is only needed for mp4

    with storage.local_copy(uri, suffix=VIDEO_SUFFIX) as path:
        try:
            reader = imageio.get_reader(path, format="FFMPEG")
        except (OSError, RuntimeError, ValueError) as exc:
            raise InputError(f"unreadable mp4: {_ffmpeg_reason(exc, path, uri)}", uri=uri) from None
        try:
            meta = reader.get_meta_data()
            frames = [np.asarray(f)[..., :3] for f in reader.iter_data()]
        except (OSError, RuntimeError, ValueError, IndexError) as exc:
            raise InputError(f"corrupt mp4: {_ffmpeg_reason(exc, path, uri)}", uri=uri) from None
        finally:
            reader.close()
    if not frames:
        raise InputError("video has no frames", uri=uri)
    fps = _finite_or_none(meta.get("fps"))
    duration = _finite_or_none(meta.get("duration"))
    if fps and duration:
        # A damaged file whose index is intact (faststart mp4) decodes fewer frames without an
        # error from ffmpeg. The container duration may include a longer audio track, so only a
        # clear shortfall counts.
        expected = duration * fps
        if len(frames) < 0.9 * expected - 1:
            raise InputError(
                f"truncated mp4: {len(frames)} frames decoded but the file declares "
                f"{duration:.3g} s at {fps:.3g} fps (~{expected:.0f} frames)",
                uri=uri,
            )
    return np.stack(frames), fps


def _finite_or_none(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) and out > 0 else None


_FFMPEG_REASONS = (  # ffmpeg's log line -> what it means for the user, most specific first
    ("does not contain any stream", "no video stream, the file has no frames"),
    ("moov atom not found", "truncated, unfinished or not an mp4 (moov atom not found)"),
    ("received no packets", "no frames could be decoded, the file is truncated or damaged"),
    ("Invalid data found when processing input", "not an mp4, or truncated (invalid data)"),
)


def _ffmpeg_reason(exc: BaseException, local_path: str, uri: str) -> str:
    """What went wrong, from ffmpeg's log, instead of imageio's whole log."""
    text = str(exc)
    for needle, reason in _FFMPEG_REASONS:
        if needle in text:
            return reason
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if "rror" in ln or "Invalid" in ln] or lines[:1]
    return "; ".join(useful[-2:]).replace(local_path, uri) or type(exc).__name__


# --- writing -------------------------------------------------------------------------------------


def write_image(uri: str, rgb: Tensor, alpha: Tensor | None = None) -> None:
    """Write an 8-bit PNG (RGBA when ``alpha`` is given); rgb is composited on white (see module).

    The bytes depend only on the pixel values (no timestamps or text chunks), so a re-run writes
    an identical file and cache keys computed from it do not change.
    """
    _require_png(uri)
    rgb8 = _to_uint8(rgb, "rgb", channels=3, batched=False)
    if alpha is None:
        storage.write_bytes(uri, _png_bytes(rgb8, "RGB"))
        return
    alpha8 = _to_uint8(alpha, "alpha", channels=1, batched=False)
    _require_same_size(rgb8, alpha8)
    storage.write_bytes(uri, _png_bytes(_rgba_from_composited(rgb8, alpha8), "RGBA"))


def write_mask(uri: str, mask: Tensor) -> None:
    """Write a mask ``(H, W, 1)`` as an 8-bit grayscale PNG."""
    _require_png(uri)
    storage.write_bytes(uri, _png_bytes(_to_uint8(mask, "mask", channels=1, batched=False)[..., 0], "L"))


def write_frames(uri_folder: str, frames: Tensor, alpha: Tensor | None = None) -> list[str]:
    """Write ``<t>.png`` for t = 0..T-1 into a folder and return their URIs.

    Every tensor is checked before the first file is written. Each file is atomic; the folder as a
    whole is not (stages mark completion with ``done.json``). Frame files of an earlier, longer
    write are removed afterwards, so the folder reads back as exactly these frames.
    """
    rgb8 = _to_uint8(frames, "frames", channels=3, batched=True)
    alpha8 = None
    if alpha is not None:
        alpha8 = _to_uint8(alpha, "alpha", channels=1, batched=True)
        _require_same_size(rgb8, alpha8)
    if alpha8 is None:
        blobs = [_png_bytes(f, "RGB") for f in rgb8]
    else:
        blobs = [_png_bytes(_rgba_from_composited(f, a), "RGBA") for f, a in zip(rgb8, alpha8)]
    return _write_frame_files(uri_folder, blobs)


def write_masks(uri_folder: str, masks: Tensor) -> list[str]:
    """Write masks ``(T, H, W, 1)`` as grayscale ``<t>.png`` files (as :func:`write_frames`)."""
    masks8 = _to_uint8(masks, "masks", channels=1, batched=True)
    return _write_frame_files(uri_folder, [_png_bytes(m[..., 0], "L") for m in masks8])


def write_video(uri: str, frames: Tensor, *, fps: float) -> None:
    """Write frames ``(T, H, W, 3)`` as an H.264 mp4; equal input gives equal bytes.

    Odd sizes are padded with white to even ones (yuv420p needs them); nothing is rescaled.
    """
    import imageio.v2 as imageio

    if posixpath.splitext(str(uri))[1].lower() != VIDEO_SUFFIX:
        raise ValueError(f"write_video writes .mp4 files, got {uri!r}")
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    rgb8 = _to_uint8(frames, "frames", channels=3, batched=True)
    t, h, w, _ = rgb8.shape
    if h % 2 or w % 2:
        padded = np.full((t, h + h % 2, w + w % 2, 3), 255, np.uint8)
        padded[:, :h, :w] = rgb8
        rgb8 = padded
    with storage.atomic_local_path(uri, suffix=VIDEO_SUFFIX) as tmp:
        writer = imageio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=float(fps),
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,
            quality=None,
            output_params=list(_X264_PARAMS),
            ffmpeg_log_level="error",
        )
        try:
            for frame in rgb8:
                writer.append_data(frame)
        finally:
            writer.close()


def _write_frame_files(uri_folder: str, blobs: list[bytes]) -> list[str]:
    uris = []
    for t, blob in enumerate(blobs):
        uris.append(storage.join(uri_folder, f"{t}.png"))
        storage.write_bytes(uris[-1], blob)
    keep = {f"{t}.png" for t in range(len(blobs))}
    for name in storage.listdir(uri_folder):
        if name not in keep and _FRAME_NAME.match(name):
            storage.remove(storage.join(uri_folder, name))
    return uris


def _require_png(uri: str) -> None:
    if posixpath.splitext(str(uri))[1].lower() != ".png":
        raise ValueError(f"images are written as .png files, got {uri!r}")


def _require_same_size(rgb8: np.ndarray, alpha8: np.ndarray) -> None:
    if rgb8.shape[:-1] != alpha8.shape[:-1]:
        raise ValueError(f"alpha shape {alpha8.shape} does not match rgb shape {rgb8.shape}")


def _to_uint8(x: Tensor, name: str, *, channels: int, batched: bool) -> np.ndarray:
    """Check an image tensor (shape, float dtype, finite, in [0, 1]) and quantise it to uint8."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    dims = "(T, H, W, C)" if batched else "(H, W, C)"
    if x.dim() != (4 if batched else 3) or x.shape[-1] != channels:
        raise ValueError(f"{name} must have shape {dims} with C={channels}, got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}")
    x = x.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -_RANGE_TOLERANCE or hi > 1.0 + _RANGE_TOLERANCE:
        raise ValueError(f"{name} values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]; clamp first")
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()


def _rgba_from_composited(rgb8: np.ndarray, alpha8: np.ndarray) -> np.ndarray:
    """Straight colour for a PNG from colour composited on white, using the quantised alpha."""
    a = alpha8.astype(np.float32) / 255.0
    c = rgb8.astype(np.float32) / 255.0
    with np.errstate(divide="ignore", invalid="ignore"):
        straight = np.where(a > 0, (c - (1.0 - a)) / np.maximum(a, 1e-12), 1.0)
    straight8 = (np.clip(straight, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.concatenate([straight8, alpha8], axis=-1)


def _png_bytes(array: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(array))  # mode follows the array: L, RGB or RGBA
    assert image.mode == mode, (image.mode, mode)
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
