"""Image -> 3D object, behind one small interface so that other backends can be added.

The paper builds X4D's 3D with LGM (Gaussians from an image). LGM is not a diffusers pipeline; the
diffusers-loadable image-to-3D model is Shap-E (``ShapEImg2ImgPipeline``), whose mesh output becomes
Gaussians through align4d's mesh sampler (:func:`align4d_core.io.mesh.gaussians_from_mesh`) when the
pair is loaded, like any mesh input. A backend is a callable ``(rgb (H, W, 3) on white) ->
Object3D`` built from ``(ImageTo3DConfig, device)``; :func:`register_backend` adds one (an LGM or
other Gaussian backend returns ``Object3D(gaussians=...)``, written as a 3DGS ``.ply``).

Shap-E's meshes are z-up and seen from below in a y-up viewer; as diffusers' Shap-E guide does, they
are turned by -90° about x, which puts them y-up with Shap-E's front (its first pan camera, on -y)
facing +z, align4d's front view (DESIGN.md §4). The mesh is then centred on its bounding box and
scaled into a sphere of radius ``image_to_3d.radius``: generated objects have no meaningful scale,
and ODA finds the distance that matches the video whatever the size. Vertex colours come out of
``decode_to_mesh`` converted to linear light; they are converted back to sRGB, the display values
the mesh sampler and the renderer use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import trimesh
from torch import Tensor

from align4d_core.config import ImageTo3DConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.ply import write_gaussians_ply
from align4d_core.pairs.weights import run_pipeline
from align4d_core.scene.gaussians import Gaussians

__all__ = ["BACKENDS", "ImageTo3D", "Object3D", "ShapEImageTo3D", "image_to_3d", "register_backend"]


@dataclass
class Object3D:
    """A generated 3D object in align4d's convention (y up, front toward +z): a mesh or Gaussians."""

    mesh: trimesh.Trimesh | None = None
    gaussians: Gaussians | None = None

    def write(self, folder: str) -> str:
        """Write ``object.glb`` (a mesh) or ``object.ply`` (3DGS) into ``folder``; return its URI."""
        if self.mesh is not None:
            uri = storage.join(folder, "object.glb")
            storage.write_bytes(uri, self.mesh.export(file_type="glb"))
            return uri
        if self.gaussians is not None:
            uri = storage.join(folder, "object.ply")
            write_gaussians_ply(uri, self.gaussians.to("cpu"))
            return uri
        raise ValueError("an Object3D holds a mesh or Gaussians")


class ImageTo3D(Protocol):
    name: str

    def __call__(self, rgb: Tensor) -> Object3D: ...


Factory = Callable[[ImageTo3DConfig, torch.device], ImageTo3D]
BACKENDS: dict[str, Factory] = {}


def register_backend(name: str, factory: Factory) -> None:
    """Make ``pairs.image_to_3d.backend = name`` build ``factory(config, device)``."""
    BACKENDS[name] = factory


def image_to_3d(config: ImageTo3DConfig, device: torch.device) -> ImageTo3D:
    """The configured backend."""
    if config.backend not in BACKENDS:
        raise InputError(
            f"unknown pairs.image_to_3d.backend {config.backend!r}; available: {', '.join(BACKENDS)}",
            field="image_to_3d",
        )
    return BACKENDS[config.backend](config, torch.device(device))


SHAP_E_TO_ALIGN4D = trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0])
"""Shap-E's z-up frame to align4d's y-up one (diffusers' Shap-E guide uses the same rotation)."""


def _linear_to_srgb(linear: Tensor) -> Tensor:
    """The exact inverse of diffusers' ``_convert_srgb_to_linear`` (applied in ``decode_to_mesh``)."""
    linear = linear.clamp(0.0, 1.0)
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear.pow(1.0 / 2.4) - 0.055).clamp(0.0, 1.0)


def normalised_mesh(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, radius: float) -> trimesh.Trimesh:
    """A Shap-E mesh turned into align4d's frame, centred and scaled into a sphere of ``radius``."""
    mesh = trimesh.Trimesh(vertices, faces, vertex_colors=colors, process=False)
    mesh.apply_transform(SHAP_E_TO_ALIGN4D)
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    mesh.apply_translation(-(lo + hi) / 2.0)
    extent = float(np.linalg.norm(mesh.vertices, axis=1).max())
    if not np.isfinite(extent) or extent <= 0.0:
        raise InputError("image-to-3D produced a degenerate mesh (no extent)", field="object")
    mesh.apply_scale(radius / extent)
    return mesh


class ShapEImageTo3D:
    """Shap-E image-to-3D (diffusers ``ShapEImg2ImgPipeline``): latent, then a marching-cubes mesh."""

    name = "shap-e"
    setting = "pairs.image_to_3d.model"

    def __init__(self, config: ImageTo3DConfig, device: torch.device) -> None:
        self.config = config
        self.device = torch.device(device)

    def __call__(self, rgb: Tensor) -> Object3D:
        from diffusers import ShapEImg2ImgPipeline
        from PIL import Image

        c = self.config
        image = Image.fromarray((rgb.float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy())

        def call(pipe) -> tuple[Tensor, Tensor, Tensor]:
            generator = torch.Generator(device="cpu").manual_seed(c.seed)
            latents = pipe(
                image,
                num_inference_steps=c.steps,
                guidance_scale=c.guidance_scale,
                generator=generator,
                output_type="latent",
            ).images
            try:
                mesh = pipe.shap_e_renderer.decode_to_mesh(latents[0][None], self.device, grid_size=c.grid_size)
            except (RuntimeError, ValueError) as error:  # an empty surface: torch.cat of no textures
                raise InputError(
                    f"Shap-E found no surface for this image ({error}); does it show one object on a plain background?",
                    field="object",
                ) from None
            colors = torch.stack([mesh.vertex_channels[k] for k in ("R", "G", "B")], dim=-1)
            return mesh.verts.float().cpu(), mesh.faces.cpu(), _linear_to_srgb(colors.float().cpu())

        vertices, faces, colors = run_pipeline(ShapEImg2ImgPipeline, self.setting, c, self.device, call)
        if len(faces) == 0:
            raise InputError("Shap-E found no surface for this image", field="object")
        rgba = np.concatenate([(colors.numpy() * 255.0).round(), np.full((len(colors), 1), 255.0)], axis=1)
        return Object3D(
            mesh=normalised_mesh(vertices.double().numpy(), faces.long().numpy(), rgba.astype(np.uint8), c.radius)
        )


register_backend(ShapEImageTo3D.name, ShapEImageTo3D)
