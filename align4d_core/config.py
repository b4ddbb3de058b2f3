"""Every configuration of align4d, in one place, as dataclasses.

Defaults taken from the paper or from DreamGaussian4D name their source. A stage takes its own
config; a run's config is the nesting of them, saved with the run and hashed into cache keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cameras import FOVY_DEG

EVAL_AZIMUTHS = (-75.0, 15.0, 105.0, 195.0)
"""Ground-truth test views of the Consistent4D protocol, degrees, elevation 0 (DESIGN.md §7)."""


@dataclass(frozen=True)
class SampleConfig:
    """The bundled synthetic X4D sample (``align4d sample``)."""

    seed: int = 0
    frames: int = 16
    size: int = 128  # pixels, square
    gaussians: int = 2500  # per procedural .ply object; mesh objects are sampled by the loader
    fps: float = 8.0
    fovy_deg: float = FOVY_DEG
    eval_azimuths: tuple[float, ...] = EVAL_AZIMUTHS
    items: tuple[str, ...] = field(default_factory=tuple)  # empty: every item


# --- the 4D object ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeformationConfig:
    """HexPlane deformation field + MLP heads (issue #3; DreamGaussian4D / 4DGaussians)."""

    feature_dim: int = 32  # channels per plane
    spatial_resolution: int = 32  # cells per spatial axis of each plane
    temporal_resolution: int | None = None  # None: the number of video frames
    hidden: int = 64  # width of the shared MLP trunk and of each head
    depth: int = 1  # hidden layers of the trunk
    bounds_margin: float = 0.2  # bounds = the object's box grown by this fraction of its size
    plane_init: tuple[float, float] = (0.1, 0.5)  # spatial planes ~ U(a, b); time planes start at 1


# --- guidance ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuidanceConfig:
    """The multiview diffusion prior behind L_mot, L_geo and the MAOD probe (DESIGN.md §5)."""

    backend: str = "auto"  # "zero123" (needs weights), "anchor" (weight-free), "auto": zero123 if its
    # weights are on this machine (a local folder or the hub cache; never downloaded), else anchor
    model: str = "ashawkey/zero123-xl-diffusers"  # hub id or local folder in a public Zero123 layout
    # (guidance/zero123_layout.py: ashawkey/bennyguo's clip_camera_projection or kxic's cc_projection)
    revision: str | None = None
    variant: str | None = None  # weight-file variant, e.g. "fp16" (bennyguo's port; threestudio loads it)
    local_files_only: bool = False  # never contact the hub (set by backend "auto")
    camera_embedding: str = "zero123"  # "zero123": [Δpolar, sin Δaz, cos Δaz, Δradius]; "stable" for
    # Stable Zero123 (no radius; the condition's polar angle last). No file of a port says which it is.
    fixed_distance: bool = False  # ImageDream-like: the MAOD probe uses azimuths -90/0/90 (eq. 11)
    guidance_scale: float = 5.0  # classifier-free guidance (DreamGaussian4D's zero123 setting)
    t_range: tuple[float, float] = (0.02, 0.98)  # SDS timesteps, fraction of training steps (DG4D)
    t_schedule: str = "uniform"  # "uniform": τ ~ U[t_range] (the paper: "randomly sampled"); "anneal":
    # DG4D's τ = round((1 − step/steps)·1000) clipped to t_range (zero123_utils.train_step with step_ratio)
    input_size: int = 256  # zero123 sees 256 px images (32x32 latents)
    dtype: str = "auto"  # "auto": float16 on CUDA, float32 on CPU


# --- Object Distance Alignment -----------------------------------------------------------------


@dataclass(frozen=True)
class SearchConfig:
    """VAOD and MAOD search (eq. 4, 5, 11; Section IV-A)."""

    d_min: float = 0.00001  # Section IV-A
    d_max: float = 3.00001  # Section IV-A
    d_step: float = 0.05  # Section IV-A
    masked: bool = False  # VAOD: MSE inside the union of the video mask and the render's alpha
    batch: int = 16  # candidate distances per render call: neighbours share a strip width (faster than 64)
    timesteps: tuple[int, ...] = (700, 800, 900)  # MAOD probe timesteps (Section III-B)
    probe_size: int = 256  # render size of the probe views (azimuths: the guidance's, eq. 5 / eq. 11)
    probe_radius: str = "relative"  # Zero123's Δradius in the probe: "relative" = d' − VAOD (eq. 5 lists
    # d' among ε_φ's arguments; threestudio passes distance − cond distance), "zero" = always 0
    maod_rule: str = "prominent"  # which local minimum left of VAOD: "prominent" or "lowest" (oda.py)
    maod_fit: bool = True  # ignore distances at which the object does not fit every probe view
    seed: int = 0  # the one fixed noise of the probe


# --- Motion-Geometry Joint Alignment and optimisation -------------------------------------------


@dataclass(frozen=True)
class MGJAConfig:
    """Loss weights of eq. 6-10; DreamGaussian4D's weights where the paper gives none."""

    lambda_rgb: float = 10000.0  # KSVA colour term (DG4D: 10000 · MSE)
    lambda_mask: float = 1000.0  # KSVA mask term (DG4D: 1000 · MSE)
    lambda_usva: float = 1.0  # λ of eq. 9: DG4D's lambda_zero123 (configs/4d.yaml: 1), applied to the
    # per-sample mean of the SDS loss (main_4d.py divides by batch_size · n_views), as here
    lambda_anchor: float = 2000.0  # λ for the anchor backend's image loss that stands in for L_geo
    views: int = 4  # N random views per frame (Section IV-A)
    elevation_range: tuple[float, float] = (-30.0, 30.0)  # random views (DG4D min_ver/max_ver)
    ramp_known_view: bool = False  # DG4D multiplies the KSVA weights by step/steps (main_4d.py); eq. 10
    # has constant weights (docs/method.md, "Losses and weights")
    reference_size: int | None = None  # video frames resized to this longer side (None: as given)


@dataclass(frozen=True)
class OptimizeConfig:
    """Training schedule; learning rates are DreamGaussian4D's (configs/4d.yaml)."""

    steps: int = 500  # DG4D iters / position_lr_max_steps
    frames_per_step: int | None = None  # None: every frame every step (DG4D batch_size = T)
    position_lr: tuple[float, float] = (0.001, 0.00002)  # init, final (DG4D)
    feature_lr: float = 0.01
    opacity_lr: float = 0.05
    scaling_lr: float = 0.005
    rotation_lr: float = 0.005
    deformation_lr: float = 0.00064  # MLP heads (DG4D deformation_lr)
    grid_lr: float = 0.0064  # HexPlane (DG4D grid_lr)
    densify: str = "adaptive"  # "adaptive": clone/split/prune with the values below (Section IV-A);
    # "none": DG4D's effective behaviour (its density_start_iter 3000 > 500 steps: it never fires)
    percent_dense: float = 0.1  # Section IV-A
    densify_interval: int = 100  # Section IV-A
    densify_grad_threshold: float = 0.05  # Section IV-A
    densify_until: float = 0.75  # fraction of the steps after which the set of Gaussians is fixed
    min_opacity: float = 0.01  # pruning (DG4D densify_and_prune)
    prune_scale: float | None = None  # prune Gaussians larger than this fraction of the object radius
    # (3DGS's big-point pruning); None: none is pruned for size alone (DG4D calls densify_and_prune
    # with max_screen_size=1, which never runs there; docs/method.md)
    ao_blocks: tuple[int, int] = (20, 10)  # AO: steps of deformation, then of Gaussians, repeated
    resolution_schedule: tuple[tuple[float, int], ...] = ((0.3, 128), (0.6, 256), (1.0, 512))  # DG4D
    checkpoint_every: int = 100
    seed: int = 0


@dataclass(frozen=True)
class ExportConfig:
    turntable_frames: int = 48  # views around the object in turntable.mp4
    turntable_elevation: float = 15.0
    fps: float = 8.0
    eval_size: int | None = None  # None: the dataset's GT views' size, else 512 (DESIGN.md §7)
    ply_sh_degree: int = 3  # padding of exported .ply files for viewers that need degree 3


@dataclass(frozen=True)
class MetricsConfig:
    """How the eval views are scored (DESIGN.md §7; Consistent4D's ``evaluation/`` scripts).

    Weights are never downloaded unless asked: a metric whose weights are not on this machine is
    reported as missing with the reason and where to put them (docs/method.md, "Metrics").
    Default locations are the caches the usual tools fill: torchvision's checkpoint cache
    (``$TORCH_HOME/hub/checkpoints``, ``~/.cache/torch/hub/checkpoints`` by default) for VGG16 and
    I3D, the Hugging Face cache for CLIP.
    """

    compute: tuple[str, ...] = ("psnr", "ssim", "lpips", "clip", "clip_f", "fvd")  # the paper's Table II
    size: int | None = 512  # frames resized (bicubic) to size x size before scoring, as Consistent4D's
    # scripts do (image.resize((512, 512))); None: score at the files' own size
    lpips_vgg: str | None = None  # torchvision VGG16 state dict (features.* keys); None: the torch cache's
    # vgg16-397923af.pth (torchvision's VGG16_Weights.IMAGENET1K_V1, what LPIPS v0.1 was trained on)
    lpips_heads: str | None = None  # LPIPS v0.1 linear heads; None: the vgg.pth torchmetrics ships
    clip_model: str = "openai/clip-vit-base-patch32"  # hub id or local folder: ViT-B/32 (Consistent4D)
    clip_revision: str | None = None
    download: bool = False  # fetch CLIP from the hub when it is not cached; off: a benchmark never
    # stalls on a download, the metric is reported missing instead
    fvd_i3d: str | None = None  # pytorch-i3d InceptionI3d(400) state dict (i3d_pretrained_400.pt, the
    # file Consistent4D's compute_fvd.py loads); None: the torch cache's i3d_pretrained_400.pt
    device: str | None = None  # None: cuda when available, else cpu
    batch_size: int = 16  # frames per forward pass of VGG16 and CLIP


@dataclass(frozen=True)
class MethodConfig:
    """The ablation switches of Table III: config, not code copies (DESIGN.md §5)."""

    oda: bool = True  # False: fixed distance 1.5 and Δradius 0 (DreamGaussian4D)
    mgja: bool = True  # False: no L_USVA (known-view loss only)
    ao: bool = True  # False: joint optimisation (JO)
    fixed_distance: float = 1.5  # the distance used when oda is False (DG4D)


# --- pair generation: any input -> a video-3D pair (DESIGN.md §6, paper Section III-E) ------------


@dataclass(frozen=True)
class TextToImageConfig:
    """Text -> image with Stable Diffusion XL (X4D's prompt-driven pipeline uses SDXL, ref. [57])."""

    model: str = "stabilityai/stable-diffusion-xl-base-1.0"  # hub id, local folder or s3:// model cache
    revision: str | None = None
    variant: str | None = None  # e.g. "fp16": the repo's half-precision weight files
    dtype: str = "auto"  # "auto": float16 on CUDA, float32 on CPU
    steps: int = 50  # diffusers' StableDiffusionXLPipeline default
    guidance_scale: float = 5.0  # diffusers' StableDiffusionXLPipeline default
    size: int = 1024  # square; SDXL's native resolution
    seed: int = 0
    prompt_suffix: str = ", a single whole object centred on a plain white background"  # so that the
    # white-background mask rule finds the object and the optimizer's white background matches
    negative_prompt: str = "cluttered background, several objects, cropped, text, watermark"
    cpu_offload: bool = False  # CUDA only: enable_model_cpu_offload (needs the accelerate package)


@dataclass(frozen=True)
class ImageToVideoConfig:
    """Image -> video with Stable Video Diffusion (X4D uses SVD, ref. [19])."""

    model: str = "stabilityai/stable-video-diffusion-img2vid"  # the 14-frame SVD
    revision: str | None = None
    variant: str | None = None
    dtype: str = "auto"
    frames: int = 14  # SVD img2vid's training length
    fps: int = 7  # the frame rate SVD is conditioned on (diffusers' default)
    steps: int = 25  # diffusers' StableVideoDiffusionPipeline default
    width: int = 1024  # SVD's training resolution; the image is padded with white to this aspect
    height: int = 576  # and the frames are cropped back to the image's own aspect
    motion_bucket_id: int = 127  # diffusers' default
    noise_aug_strength: float = 0.02  # diffusers' default
    min_guidance_scale: float = 1.0  # diffusers' default
    max_guidance_scale: float = 3.0  # diffusers' default
    decode_chunk_size: int = 8  # frames per VAE decode (memory), as in diffusers' SVD docs
    seed: int = 0
    cpu_offload: bool = False  # CUDA only: enable_model_cpu_offload (needs the accelerate package)


@dataclass(frozen=True)
class ImageTo3DConfig:
    """Image -> 3D object. ``shap-e``: diffusers' ShapEImg2ImgPipeline, mesh output (the paper's LGM
    is not diffusers-loadable; other backends register in align4d_core/pairs/image_to_3d.py)."""

    backend: str = "shap-e"
    model: str = "openai/shap-e-img2img"
    revision: str | None = None
    variant: str | None = None
    dtype: str = "auto"
    steps: int = 64  # diffusers' Shap-E image-to-3D example
    guidance_scale: float = 3.0  # diffusers' Shap-E image-to-3D example
    grid_size: int = 128  # marching-cubes grid (ShapERenderer.decode_to_mesh's default)
    radius: float = 0.5  # the mesh is centred and scaled to fit a sphere of this radius (the sample's 0.45-ish)
    seed: int = 0


@dataclass(frozen=True)
class FrontViewConfig:
    """3D -> image: the front view (azimuth 0, elevation 0; DESIGN.md §4) of a 3D input."""

    size: int = 512  # square render
    fill: float = 0.8  # the object's bounding sphere spans this fraction of the view's height
    # (DreamGaussian's preprocessing leaves a 0.2 border); it sets the canonical distance
    distance: float | None = None  # a fixed distance instead of the canonical one
    mesh_samples: int = 16384  # Gaussians sampled on a mesh input for the render (mesh.DEFAULT_N)


@dataclass(frozen=True)
class MaskConfig:
    """Foreground masks of generated images and videos that have no alpha (docs/method.md)."""

    backend: str = "auto"  # "auto": rembg when the package and its weights are on this machine, else
    # "threshold"; "rembg" (required); "threshold" (the white-background rule)
    rembg_model: str = "u2net"  # rembg's session name; weights are never downloaded
    white_threshold: float = 0.08  # a pixel is background when every channel is within this of white
    # (about 20/255) and it is connected to the image border through such pixels


@dataclass(frozen=True)
class CaptionConfig:
    """The prompt of an image/video/3D item that has none (X4D uses an image-to-prompt tool, ref. [58])."""

    backend: str = "none"  # "none": the manifest's prompt (may be empty); "blip": a BLIP captioner
    model: str = "Salesforce/blip-image-captioning-base"
    revision: str | None = None
    max_tokens: int = 30


@dataclass(frozen=True)
class PairsConfig:
    """How the missing modalities of an item are generated; only the pairs stage's hash includes it."""

    text_to_image: TextToImageConfig = TextToImageConfig()
    image_to_video: ImageToVideoConfig = ImageToVideoConfig()
    image_to_3d: ImageTo3DConfig = ImageTo3DConfig()
    front_view: FrontViewConfig = FrontViewConfig()
    masks: MaskConfig = MaskConfig()
    caption: CaptionConfig = CaptionConfig()


@dataclass(frozen=True)
class RunConfig:
    """Everything one video-3D pair's optimisation depends on; hashed into cache keys."""

    method: MethodConfig = MethodConfig()
    search: SearchConfig = SearchConfig()
    guidance: GuidanceConfig = GuidanceConfig()
    deformation: DeformationConfig = DeformationConfig()
    mgja: MGJAConfig = MGJAConfig()
    optimize: OptimizeConfig = OptimizeConfig()
    export: ExportConfig = ExportConfig()
    metrics: MetricsConfig = MetricsConfig()  # only the evaluate stage's hash includes it (stages.py)
    pairs: PairsConfig = PairsConfig()  # the pair generation; no optimisation stage's hash includes it
    mesh_samples: int = 16384  # Gaussians sampled on a mesh input (align4d_core.mesh.DEFAULT_N)
    fovy_deg: float = FOVY_DEG  # the field of view assumed for the input video (DESIGN.md §4)


# --- presets, profiles and config files ----------------------------------------------------------

PRESETS: dict[str, MethodConfig] = {
    "align4d": MethodConfig(),
    "no-oda": MethodConfig(oda=False),
    "no-mgja": MethodConfig(mgja=False),
    "no-ao": MethodConfig(ao=False),
}
"""The full method and the ablations of Table III, by name (nerfstudio-style presets)."""

CPU_PROFILE: dict = {
    "optimize": {
        "steps": 150,
        "frames_per_step": 4,
        "resolution_schedule": [[1.0, 128]],
        "grid_lr": 0.016,
        "deformation_lr": 0.0016,
        "checkpoint_every": 50,
    },
    "mesh_samples": 4096,
    "metrics": {"size": None},
}
"""What changes on a CPU, where the paper's schedule (500 steps, every frame, renders up to 512 px)
would take hours: 150 steps of 4 frames, five whole AO cycles (so that `align4d run` does the five
sample items well under 10 minutes on 2 cores), unknown views at 128 px, the deformation's learning
rates ×2.5 to make up for the fewer steps, and meshes sampled with 4096 Gaussians (16384 would be
several per pixel at 128 px). Eval views are scored at their own size (the sample's 128 px) rather than upsampled to
512 px: upsampling adds no detail, and LPIPS at 512 px costs about 1.5 s per frame pair on 2 cores
(benchmarks/metrics.py). The method is the same; docs/method.md gives the measurements behind it."""


def profile_for(device_type: str, profile: str = "auto") -> dict:
    """Overrides of the named profile: "paper" (none), "cpu", or "auto" (cpu unless on CUDA)."""
    if profile not in ("auto", "paper", "cpu"):
        raise ValueError(f"unknown profile {profile!r}; expected 'auto', 'paper' or 'cpu'")
    use_cpu = profile == "cpu" or (profile == "auto" and device_type != "cuda")
    return CPU_PROFILE if use_cpu else {}


def to_dict(config) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    from dataclasses import asdict

    return asdict(config)


def from_dict(cls, values: dict):
    """Build a config dataclass from a (partial) dict; nested dataclasses recurse, lists become
    tuples, and an unknown key is an error that names it (a typo must not be ignored)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown setting {cls.__name__}.{key}; known: {', '.join(known)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[key] = value
    return cls(**kwargs)


def merge(base: dict, override: dict) -> dict:
    """``override`` laid over ``base``, recursively for nested dicts."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build_run_config(device_type: str, values: dict | None = None, preset: str | None = None) -> RunConfig:
    """The run config: defaults, then the device profile, then the preset, then ``values``.

    ``values`` (e.g. a config file) win over everything, so an explicit setting is never replaced
    by a profile; ``values["profile"]`` picks the profile ("auto" by default).
    """
    values = dict(values or {})
    profile = values.pop("profile", "auto")
    merged = merge(to_dict(RunConfig()), profile_for(device_type, profile))
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        merged = merge(merged, {"method": to_dict(PRESETS[preset])})
    return from_dict(RunConfig, merge(merged, values))
