"""VGG16's convolutional part (``features``), our own definition in the torchvision layout.

torchvision cannot be installed beside the CPU torch here (DESIGN.md, NOTES.md), so LPIPS needs a
VGG16 of its own. Module indices are torchvision's (``features.0`` ... ``features.30``: configuration
"D" of Simonyan & Zisserman, 3x3 convolutions with padding 1, ReLU, 2x2 max pooling), so that a
torchvision VGG16 state dict (``vgg16-397923af.pth``) loads unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn

from align4d_core.metrics.weights import VGG16_FILE, check_keys, load_state_dict, resolve

CFG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
"""VGG16 (configuration D): output channels of each 3x3 convolution, "M" a 2x2 max pooling."""

LPIPS_TAPS = (3, 8, 15, 22, 29)
"""The ReLU outputs LPIPS compares: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (indices in ``features``)."""


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features``: 13 convolutions, 13 ReLUs, 5 poolings, indices 0..30."""
    layers: list[nn.Module] = []
    channels = 3
    for item in CFG_D:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(item)
    return nn.Sequential(*layers)


class VGG16Taps(nn.Module):
    """VGG16 ``features`` up to relu5_3, returning the five ReLU outputs LPIPS uses."""

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features()

    def forward(self, x: Tensor) -> list[Tensor]:
        taps = []
        for index, layer in enumerate(self.features[: LPIPS_TAPS[-1] + 1]):
            x = layer(x)
            if index in LPIPS_TAPS:
                taps.append(x)
        return taps


def load_vgg16(uri: str | None) -> VGG16Taps:
    """VGG16 from a torchvision state dict (a whole ``vgg16`` dict: only ``features.*`` is used; a
    bare ``features`` dict with keys ``0.weight`` ... is accepted too). Raises :class:`MissingWeights`."""
    path = resolve(uri, VGG16_FILE)
    state = load_state_dict(path, "VGG16 weights", "lpips_vgg")
    if not any(k.startswith("features.") for k in state):
        state = {f"features.{k}": v for k, v in state.items()}
    state = {k: v for k, v in state.items() if k.startswith("features.")}
    model = VGG16Taps()
    check_keys(state, model, path, "torchvision VGG16", "lpips_vgg")
    model.requires_grad_(False)
    return model.eval()
