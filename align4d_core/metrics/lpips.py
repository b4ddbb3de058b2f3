"""LPIPS with a VGG16 backbone (Zhang et al. 2018, v0.1), computed here, without torchvision.

The computation is that of the reference implementation (richzhang/PerceptualSimilarity, which
torchmetrics copies): images in [0, 1] are mapped to [-1, 1] and through the scaling layer
(shift/scale per channel), VGG16's relu1_2 ... relu5_3 are unit-normalised along channels, their
squared difference is weighted per channel by the learnt 1x1 "lin" heads, averaged over space and
summed over the five layers. The backbone comes from a torchvision VGG16 state dict
(:mod:`.vgg`); the heads from the ``vgg.pth`` file that torchmetrics ships (keys
``lin<k>.model.1.weight``, 1x1 convolutions without bias). Consistent4D scores with torchmetrics'
``LearnedPerceptualImagePatchSimilarity(net_type="vgg")``, i.e. exactly this.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from align4d_core.metrics.vgg import VGG16Taps, load_vgg16
from align4d_core.metrics.weights import MissingWeights, load_state_dict

CHANNELS = (64, 128, 256, 512, 512)
"""Channels of relu1_2 ... relu5_3, the inputs of the five lin heads."""

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
"""LPIPS's ScalingLayer: inputs in [-1, 1] are mapped to ImageNet's normalisation, (x - shift) / scale."""


def torchmetrics_heads() -> str:
    """The LPIPS v0.1 VGG heads bundled with torchmetrics (``functional/image/lpips_models/vgg.pth``)."""
    import torchmetrics.functional.image as tm_image

    return os.path.join(os.path.dirname(tm_image.__file__), "lpips_models", "vgg.pth")


class LPIPS(nn.Module):
    """LPIPS(VGG) distance per image pair; lower is more similar, 0 for identical images."""

    def __init__(self, backbone: VGG16Taps, heads: list[Tensor]) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ParameterList([nn.Parameter(h.reshape(1, -1, 1, 1), requires_grad=False) for h in heads])
        self.register_buffer("shift", torch.tensor(SHIFT).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).reshape(1, 3, 1, 1), persistent=False)

    def features(self, images: Tensor) -> list[Tensor]:
        """Channel-normalised VGG features of ``(N, H, W, 3)`` images in [0, 1]."""
        x = images.permute(0, 3, 1, 2) * 2.0 - 1.0
        x = (x - self.shift) / self.scale
        return [f / torch.sqrt(1e-8 + (f * f).sum(dim=1, keepdim=True)) for f in self.backbone(x)]

    def distance(self, a: list[Tensor], b: list[Tensor]) -> Tensor:
        """LPIPS from two sets of :meth:`features`: one value per image."""
        total = 0.0
        for fa, fb, head in zip(a, b, self.heads, strict=True):
            total = total + ((fa - fb).pow(2) * head).sum(dim=1).mean(dim=(1, 2))
        return total  # type: ignore[return-value]

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.distance(self.features(pred), self.features(target))


def load_heads(uri: str | None) -> list[Tensor]:
    """The five lin heads (each ``(C,)``) from an LPIPS ``vgg.pth``; None: torchmetrics' copy."""
    path = uri or torchmetrics_heads()
    state = load_state_dict(path, "LPIPS VGG heads", "lpips_heads")
    heads = []
    for k, channels in enumerate(CHANNELS):
        key = next((name for name in (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight") if name in state), None)
        if key is None or state[key].numel() != channels:
            raise MissingWeights(f"{path} has no LPIPS head lin{k} of {channels} channels; set metrics.lpips_heads")
        heads.append(state[key].reshape(channels).float())
    return heads


def load_lpips(vgg: str | None, heads: str | None) -> LPIPS:
    """LPIPS(VGG) from a torchvision VGG16 state dict and LPIPS heads; raises :class:`MissingWeights`."""
    return LPIPS(load_vgg16(vgg), load_heads(heads)).eval()


@torch.inference_mode()
def lpips_per_frame(model: LPIPS, pred: Tensor, target: Tensor, batch: int) -> Tensor:
    """LPIPS of each frame pair of two ``(T, H, W, 3)`` videos, ``batch`` frames per forward pass."""
    device = next(model.parameters()).device
    out = [
        model(pred[i : i + batch].to(device), target[i : i + batch].to(device)).double().cpu()
        for i in range(0, len(pred), batch)
    ]
    return torch.cat(out)
