"""Inception-v1 I3D (Carreira & Zisserman 2017), our own definition in the pytorch-i3d layout.

Module names, shapes and "same" padding follow piergiaj/pytorch-i3d's ``InceptionI3d``, the class
whose Kinetics-400 weights (``i3d_pretrained_400.pt``) FVD code in the field loads (Consistent4D's
``evaluation/compute_fvd.py`` via DisCo, VideoGPT, common-metrics-on-video-quality), so that file
loads unchanged: ``Conv3d_1a_7x7.conv3d.weight``, ``Conv3d_1a_7x7.bn.running_mean``, ...,
``Mixed_5c.b3b.bn.weight``, ``logits.conv3d.weight``, ``logits.conv3d.bias``.

The head is the one of Consistent4D's copy (DisCo's ``inception3d.py``): average pooling over 1x7x7
(spatial only), the 1x1x1 "logits" convolution, then the mean over the remaining time steps, so a
video of any length gives one 400-d vector of logits (pre-softmax). pytorch-i3d's original pools
2x7x7, so it needs at least 9 frames, and returns logits per time step. Inputs are
``(N, 3, T, 224, 224)`` in [-1, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from align4d_core.metrics.weights import I3D_FILE, check_keys, load_state_dict, resolve

INCEPTION_BLOCKS = (
    # name, input channels, (b0, b1a, b1b, b2a, b2b, b3b) output channels; "pool" a max pooling
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)
"""Inception-v1's mixed blocks (Szegedy et al. 2015, Table 1), inflated to 3D."""


def _same_pad(x: Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> Tensor:
    """TensorFlow "SAME" padding of pytorch-i3d's compute_pad: the extra cell goes after."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Convolution (no bias) + batch norm (eps 1e-3) + ReLU, with "same" padding; the logits unit
    has a bias and neither norm nor activation."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), *, logits: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.is_logits = tuple(kernel), tuple(stride), logits
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=logits)
        if not logits:
            self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        return x if self.is_logits else F.relu(self.bn(x))


class MaxPoolSame(nn.Module):
    """Max pooling with pytorch-i3d's "same" padding (zeros, as F.pad gives)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches: 1x1; 1x1 → 3x3x3; 1x1 → 3x3x3; 3x3x3 max pool → 1x1; concatenated."""

    def __init__(self, cin: int, out: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, out[0])
        self.b1a, self.b1b = Unit3D(cin, out[1]), Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, out[3]), Unit3D(out[3], out[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, out[5])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """I3D with ``num_classes`` logits; :meth:`forward` returns ``(N, num_classes)``."""

    def __init__(self, num_classes: int = 400, in_channels: int = 3) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        for name, cin, spec in INCEPTION_BLOCKS:
            self.add_module(name, MaxPoolSame(*spec) if cin == "pool" else InceptionBlock(cin, spec))
        self.logits = Unit3D(1024, num_classes, logits=True)

    def forward(self, x: Tensor) -> Tensor:
        for name, module in self.named_children():
            if name != "logits":
                x = module(x)
        x = F.avg_pool3d(x, kernel_size=(1, 7, 7), stride=1)  # 224 px inputs leave 7x7: one cell
        return self.logits(x).squeeze(4).squeeze(3).mean(dim=2)


def load_i3d(uri: str | None) -> InceptionI3d:
    """I3D from a pytorch-i3d state dict (``i3d_pretrained_400.pt``); raises :class:`MissingWeights`."""
    path = resolve(uri, I3D_FILE)
    state = load_state_dict(path, "I3D weights", "fvd_i3d")
    classes = state.get("logits.conv3d.bias")
    model = InceptionI3d(num_classes=int(classes.numel()) if classes is not None else 400)
    check_keys(state, model, path, "pytorch-i3d InceptionI3d", "fvd_i3d")
    model.requires_grad_(False)
    return model.eval()


def temporal_cells(frames: int) -> int:
    """Time steps left before the head: three stride-2 stages with "same" padding."""
    for _ in range(3):
        frames = math.ceil(frames / 2)
    return frames
