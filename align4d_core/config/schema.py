"""Every setting of align4d, as typed dataclasses.

Defaults taken from the paper or from DreamGaussian4D name their source. A stage takes its own
config; a run's config is the nesting of them, saved with the run and hashed into cache keys. The
types are checked where a config file is read (:mod:`.loading`): a value of the wrong type or out of
range, or an unknown key, is an error naming the key, the value and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

STRICT = ConfigDict(extra="forbid", strict=True)
"""Every settings class refuses unknown keys and values of the wrong type (``"7"`` for an int) when a
config file is read (:func:`from_dict`)."""
Count = Annotated[int, Field(ge=1)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
DType = Literal["auto", "float16", "bfloat16", "float32"]

FOVY_DEG = 49.1
"""The field of view of every camera (DESIGN.md §4): DreamGaussian4D's and LGM's, Zero123's renders'."""

EVAL_AZIMUTHS = (-75.0, 15.0, 105.0, 195.0)
"""Ground-truth test views of the Consistent4D protocol, degrees, elevation 0 (DESIGN.md §7)."""

METRICS = ("psnr", "ssim", "lpips", "clip", "clip_f", "fvd")
"""The metrics of the Consistent4D protocol, in the order of the paper's Table II (DESIGN.md §7)."""


@dataclass(frozen=True)
class SampleConfig:
    """The bundled synthetic X4D sample (``align4d sample``)."""

    __pydantic_config__ = STRICT

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

    __pydantic_config__ = STRICT

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

    __pydantic_config__ = STRICT

    # "zero123" (needs weights), "anchor" (weight-free), "auto": zero123 if its weights are on this
    # machine (a local folder or the hub cache; never downloaded), else the bundled learned prior
    # (model "align4d:prior-v1", guidance/bundled.py), else anchor
    backend: Literal["auto", "zero123", "anchor"] = "auto"
    model: str = "ashawkey/zero123-xl-diffusers"  # hub id or local folder in a public Zero123 layout
    # (guidance/zero123_layout.py: ashawkey/bennyguo's clip_camera_projection or kxic's cc_projection)
    revision: str | None = None
    variant: str | None = None  # weight-file variant, e.g. "fp16" (bennyguo's port; threestudio loads it)
    local_files_only: bool = False  # never contact the hub (set by backend "auto")
    # "zero123": [Δpolar, sin Δaz, cos Δaz, Δradius]; "stable" for
    # Stable Zero123 (no radius; the condition's polar angle last). No file of a port says which it is.
    camera_embedding: Literal["zero123", "stable"] = "zero123"
    fixed_distance: bool = False  # ImageDream-like: the MAOD probe uses azimuths -90/0/90 (eq. 11)
    guidance_scale: NonNegative = 5.0  # classifier-free guidance (DreamGaussian4D's zero123 setting)
    t_range: tuple[Fraction, Fraction] = (0.02, 0.98)  # SDS timesteps, fraction of training steps (DG4D)
    # "uniform": τ ~ U[t_range] (the paper: "randomly sampled"); "anneal":
    # DG4D's τ = round((1 − step/steps)·1000) clipped to t_range (zero123_utils.train_step with step_ratio)
    t_schedule: Literal["uniform", "anneal"] = "uniform"
    input_size: Annotated[int, Field(ge=8, multiple_of=8)] = 256  # zero123 sees 256 px images (32x32 latents)
    dtype: DType = "auto"  # "auto": float16 on CUDA, float32 on CPU


# --- Object Distance Alignment -----------------------------------------------------------------


@dataclass(frozen=True)
class SearchConfig:
    """VAOD and MAOD search (eq. 4, 5, 11; Section IV-A)."""

    __pydantic_config__ = STRICT

    d_min: Positive = 0.00001  # Section IV-A
    d_max: Positive = 3.00001  # Section IV-A
    d_step: Positive = 0.05  # Section IV-A
    masked: bool = False  # VAOD: MSE inside the union of the video mask and the render's alpha
    batch: Count = 16  # candidate distances per render call: neighbours share a strip width (faster than 64)
    # VAOD curve: "bounded" leaves out (NaN/null) the distances provably above the minimum (eq. 4's
    # argmin unchanged; method/vaod_bound.py, issue 16), "full" renders all, for complete Fig. 5/6 curves
    vaod_curve: Literal["bounded", "full"] = "bounded"
    timesteps: tuple[Annotated[int, Field(ge=0)], ...] = (700, 800, 900)  # MAOD probe timesteps (Section III-B)
    probe_size: Annotated[int, Field(ge=8)] | None = None  # render size of the probe views; None: the
    # guidance's input size (256 for Zero123, what its renders are resized to anyway)
    # Zero123's Δradius in the probe: "relative" = d' − VAOD (eq. 5 lists
    # d' among ε_φ's arguments; threestudio passes distance − cond distance), "zero" = always 0
    probe_radius: Literal["relative", "zero"] = "relative"
    # which local minimum left of VAOD: "prominent" or "lowest" (method/oda.py)
    maod_rule: Literal["prominent", "lowest"] = "prominent"
    maod_fit: bool = True  # ignore distances at which the object does not fit every probe view
    seed: int = 0  # the one fixed noise of the probe


# --- Motion-Geometry Joint Alignment and optimisation -------------------------------------------


@dataclass(frozen=True)
class MGJAConfig:
    """Loss weights of eq. 6-10; DreamGaussian4D's weights where the paper gives none."""

    __pydantic_config__ = STRICT

    lambda_rgb: NonNegative = 10000.0  # KSVA colour term (DG4D: 10000 · MSE)
    lambda_mask: NonNegative = 1000.0  # KSVA mask term (DG4D: 1000 · MSE)
    lambda_usva: NonNegative = 1.0  # λ of eq. 9: DG4D's lambda_zero123 (configs/4d.yaml: 1), applied to the
    # per-sample mean of the SDS loss (main_4d.py divides by batch_size · n_views), as here
    lambda_anchor: NonNegative = 2000.0  # λ for the anchor backend's image loss that stands in for L_geo
    views: Count = 4  # N random views per frame (Section IV-A)
    elevation_range: tuple[float, float] = (-30.0, 30.0)  # random views (DG4D min_ver/max_ver)
    ramp_known_view: bool = True  # DG4D multiplies the KSVA weights by step/steps (main_4d.py); eq. 10
    # has constant weights; the ramp measured better on the sample (docs/method.md, "Open choices")
    reference_size: Count | None = None  # video frames resized to this longer side (None: as given)


@dataclass(frozen=True)
class OptimizeConfig:
    """Training schedule; learning rates are DreamGaussian4D's (configs/4d.yaml)."""

    __pydantic_config__ = STRICT

    steps: Count = 500  # DG4D iters / position_lr_max_steps
    frames_per_step: Count | None = None  # None: every frame every step (DG4D batch_size = T)
    position_lr: tuple[Positive, Positive] = (0.001, 0.00002)  # init, final (DG4D)
    feature_lr: NonNegative = 0.01
    opacity_lr: NonNegative = 0.05
    scaling_lr: NonNegative = 0.005
    rotation_lr: NonNegative = 0.005
    deformation_lr: NonNegative = 0.00064  # MLP heads (DG4D deformation_lr)
    grid_lr: NonNegative = 0.0064  # HexPlane (DG4D grid_lr)
    # "adaptive": clone/split/prune with the values below (Section IV-A);
    # "none": DG4D's effective behaviour (its density_start_iter 3000 > 500 steps: it never fires)
    densify: Literal["adaptive", "none"] = "adaptive"
    percent_dense: Positive = 0.1  # Section IV-A
    densify_interval: Count = 100  # Section IV-A
    densify_grad_threshold: NonNegative = 0.05  # Section IV-A
    densify_until: Fraction = 0.75  # fraction of the steps after which the set of Gaussians is fixed
    min_opacity: Fraction = 0.01  # pruning (DG4D densify_and_prune)
    prune_scale: Positive | None = None  # prune Gaussians larger than this fraction of the object radius
    # (3DGS's big-point pruning); None: none is pruned for size alone (DG4D calls densify_and_prune
    # with max_screen_size=1, which never runs there; docs/method.md)
    ao_blocks: tuple[Count, Count] = (20, 10)  # AO: steps of deformation, then of Gaussians, repeated
    resolution_schedule: tuple[tuple[Fraction, Annotated[int, Field(ge=8)]], ...] = (
        (0.3, 128),
        (0.6, 256),
        (1.0, 512),
    )  # DG4D
    checkpoint_every: Count = 100
    seed: int = 0


@dataclass(frozen=True)
class ExportConfig:
    __pydantic_config__ = STRICT

    turntable_frames: Count = 48  # views around the object in turntable.mp4
    turntable_elevation: float = 15.0
    fps: float = 8.0
    eval_size: Count | None = None  # None: the dataset's GT views' size, else 512 (DESIGN.md §7)
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

    __pydantic_config__ = STRICT

    compute: tuple[str, ...] = METRICS  # the paper's Table II
    protocol: Literal["consistent4d", "clean"] = "consistent4d"  # consistent4d: Consistent4D's
    # evaluation/compute_image_level_metrics.py and compute_fvd.py arithmetic (8-bit PIL resize,
    # data range from the frame); clean: float resize, data range 1 (metrics/protocol.py)
    size: Count | None = 512  # frames resized (bicubic) to size x size before scoring, as Consistent4D's
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
    batch_size: Count = 16  # frames per forward pass of VGG16 and CLIP


@dataclass(frozen=True)
class MethodConfig:
    """The ablation switches of Table III: config, not code copies (DESIGN.md §5)."""

    __pydantic_config__ = STRICT

    oda: bool = True  # False: fixed distance 1.5 and Δradius 0 (DreamGaussian4D)
    mgja: bool = True  # False: no L_USVA (known-view loss only)
    ao: bool = True  # False: joint optimisation (JO)
    fixed_distance: Positive = 1.5  # the distance used when oda is False (DG4D)


# --- pair generation: any input -> a video-3D pair (DESIGN.md §6, paper Section III-E) ------------


@dataclass(frozen=True)
class TextToImageConfig:
    """Text -> image with Stable Diffusion XL (X4D's prompt-driven pipeline uses SDXL, ref. [57])."""

    __pydantic_config__ = STRICT

    model: str = "stabilityai/stable-diffusion-xl-base-1.0"  # hub id, local folder or s3:// model cache
    revision: str | None = None
    variant: str | None = None  # e.g. "fp16": the repo's half-precision weight files
    dtype: DType = "auto"  # "auto": float16 on CUDA, float32 on CPU
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

    __pydantic_config__ = STRICT

    model: str = "stabilityai/stable-video-diffusion-img2vid"  # the 14-frame SVD
    revision: str | None = None
    variant: str | None = None
    dtype: DType = "auto"
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

    __pydantic_config__ = STRICT

    backend: str = "shap-e"
    model: str = "openai/shap-e-img2img"
    revision: str | None = None
    variant: str | None = None
    dtype: DType = "auto"
    steps: int = 64  # diffusers' Shap-E image-to-3D example
    guidance_scale: float = 3.0  # diffusers' Shap-E image-to-3D example
    grid_size: int = 128  # marching-cubes grid (ShapERenderer.decode_to_mesh's default)
    radius: float = 0.5  # the mesh is centred and scaled to fit a sphere of this radius (the sample's 0.45-ish)
    seed: int = 0


@dataclass(frozen=True)
class FrontViewConfig:
    """3D -> image: the front view (azimuth 0, elevation 0; DESIGN.md §4) of a 3D input."""

    __pydantic_config__ = STRICT

    size: int = 512  # square render
    fill: float = 0.8  # the object's bounding sphere spans this fraction of the view's height
    # (DreamGaussian's preprocessing leaves a 0.2 border); it sets the canonical distance
    distance: float | None = None  # a fixed distance instead of the canonical one
    mesh_samples: int = 16384  # Gaussians sampled on a mesh input for the render (mesh.DEFAULT_N)


@dataclass(frozen=True)
class MaskConfig:
    """Foreground masks of generated images and videos that have no alpha (docs/method.md)."""

    __pydantic_config__ = STRICT

    backend: str = "auto"  # "auto": rembg when the package and its weights are on this machine, else
    # "threshold"; "rembg" (required); "threshold" (the white-background rule)
    rembg_model: str = "u2net"  # rembg's session name; weights are never downloaded
    white_threshold: float = 0.08  # a pixel is background when every channel is within this of white
    # (about 20/255) and it is connected to the image border through such pixels


@dataclass(frozen=True)
class CaptionConfig:
    """The prompt of an image/video/3D item that has none (X4D uses an image-to-prompt tool, ref. [58])."""

    __pydantic_config__ = STRICT

    backend: str = "none"  # "none": the manifest's prompt (may be empty); "blip": a BLIP captioner
    model: str = "Salesforce/blip-image-captioning-base"
    revision: str | None = None
    max_tokens: int = 30


@dataclass(frozen=True)
class PairsConfig:
    """How the missing modalities of an item are generated; only the pairs stage's hash includes it."""

    __pydantic_config__ = STRICT

    text_to_image: TextToImageConfig = TextToImageConfig()
    image_to_video: ImageToVideoConfig = ImageToVideoConfig()
    image_to_3d: ImageTo3DConfig = ImageTo3DConfig()
    front_view: FrontViewConfig = FrontViewConfig()
    masks: MaskConfig = MaskConfig()
    caption: CaptionConfig = CaptionConfig()


@dataclass(frozen=True)
class RunConfig:
    """Everything one video-3D pair's optimisation depends on; hashed into cache keys."""

    __pydantic_config__ = STRICT

    method: MethodConfig = MethodConfig()
    search: SearchConfig = SearchConfig()
    guidance: GuidanceConfig = GuidanceConfig()
    deformation: DeformationConfig = DeformationConfig()
    mgja: MGJAConfig = MGJAConfig()
    optimize: OptimizeConfig = OptimizeConfig()
    export: ExportConfig = ExportConfig()
    metrics: MetricsConfig = MetricsConfig()  # only the evaluate stage's hash includes it (pipeline/stages.py)
    pairs: PairsConfig = PairsConfig()  # the pair generation; no optimisation stage's hash includes it
    mesh_samples: Count = 16384  # Gaussians sampled on a mesh input (align4d_core.io.mesh.DEFAULT_N)
    # the field of view assumed for the input video (DESIGN.md §4)
    fovy_deg: Annotated[float, Field(gt=0, lt=180)] = FOVY_DEG


# --- the learned prior (align4d prior data | train; align4d_core/prior/) -------------------------


@dataclass(frozen=True)
class PriorDataConfig:
    """The learned prior's training pairs (``align4d prior data``; align4d_core/prior/data.py)."""

    __pydantic_config__ = STRICT

    seed: int = 0
    objects: Count = 320  # procedural objects (align4d_core/prior/objects.py)
    pairs_per_object: Count = 12  # (condition view, target view) pairs per object
    gaussians: Count = 1500  # per object
    size: Annotated[int, Field(ge=16, multiple_of=8)] = 64  # square renders, pixels
    d_prior: Positive = 1.3  # the training distance: the MAOD a perfect probe finds (docs/method.md)
    band: NonNegative = 0.1  # both views' distances ~ U[d_prior - band, d_prior + band]
    condition_elevation: tuple[float, float] = (-15.0, 15.0)  # degrees: videos and front views are near 0
    target_elevation: tuple[float, float] = (-30.0, 30.0)  # degrees: MGJA's random views (DG4D min/max_ver)
    same_view: Fraction = 0.1  # share of pairs with Δpose 0 (eq. 8's case)
    shard_objects: Count = 40  # objects per shard file
    fovy_deg: Annotated[float, Field(gt=0, lt=180)] = FOVY_DEG


@dataclass(frozen=True)
class PriorModelConfig:
    """Zero123's parts at a size that trains on a CPU (align4d_core/prior/model.py)."""

    __pydantic_config__ = STRICT

    size: Annotated[int, Field(ge=16, multiple_of=8)] = 64  # the model's input size (guidance.input_size)
    latent_channels: Count = 4  # as Stable Diffusion's VAE
    # Four VAE levels: 64 px -> 8x8x4 latents, Stable Diffusion's 48x compression (512 px -> 64x64x4).
    # The UNet's sample size follows: size // 2 ** (len(vae_channels) - 1). Sized by measurement on
    # 2 CPU cores (forward, backward and Adam, batch 32): 0.62 s per VAE step and 0.30 s per UNet
    # step, against 1.80 / 1.36 s (batch 48) for VAE (32, 64, 64) with 16x16 latents.
    vae_channels: tuple[Count, ...] = (16, 32, 32, 32)
    unet_channels: tuple[Count, ...] = (64, 96, 128)
    embedding: Count = 64  # CLIP projection = UNet cross-attention (CLIPCameraProjection ties them)
    clip_hidden: Count = 64
    clip_layers: Count = 2
    clip_size: Count = 32  # CLIP's input, pixels
    clip_patch: Count = 8


@dataclass(frozen=True)
class PriorTrainConfig:
    """Training the learned prior (``align4d prior train``; align4d_core/prior/train.py)."""

    __pydantic_config__ = STRICT

    seed: int = 0
    model: PriorModelConfig = PriorModelConfig()
    vae_steps: Annotated[int, Field(ge=0)] = 500
    vae_batch: Count = 32
    vae_lr: Positive = 1e-3
    kl_weight: NonNegative = 1e-6  # as Stable Diffusion's VAE (LDM's KL weight)
    unet_steps: Annotated[int, Field(ge=0)] = 4000  # with vae_steps: about 25 min on 2 CPU cores
    batch: Count = 32
    lr: Positive = 3e-4
    condition_drop: Fraction = 0.1  # classifier-free guidance's unconditional share (zeros, as at run time)
    checkpoint_every: Count = 250


__all__ = [
    "FOVY_DEG",
    "EVAL_AZIMUTHS",
    "METRICS",
    "STRICT",
    "Count",
    "Positive",
    "NonNegative",
    "Fraction",
    "DType",
    "SampleConfig",
    "DeformationConfig",
    "GuidanceConfig",
    "SearchConfig",
    "MGJAConfig",
    "OptimizeConfig",
    "ExportConfig",
    "MetricsConfig",
    "MethodConfig",
    "TextToImageConfig",
    "ImageToVideoConfig",
    "ImageTo3DConfig",
    "FrontViewConfig",
    "MaskConfig",
    "CaptionConfig",
    "PairsConfig",
    "RunConfig",
    "PriorDataConfig",
    "PriorModelConfig",
    "PriorTrainConfig",
]
