"""Where the metric networks' weights come from, and the one error that says they are not there.

A metric whose weights are absent or unreadable is *missing* (DESIGN.md §7): the protocol catches
:class:`MissingWeights` and reports its reason instead of a number, and the other metrics still
compute. Weights are never downloaded from here; the reason says which setting to change.
"""

from __future__ import annotations

import os

import torch

from align4d_core.errors import InputError
from align4d_core.io import storage

VGG16_FILE = "vgg16-397923af.pth"
"""torchvision's file name for VGG16_Weights.IMAGENET1K_V1 (the backbone LPIPS v0.1 was trained with)."""

I3D_FILE = "i3d_pretrained_400.pt"
"""The pytorch-i3d Kinetics-400 weights that Consistent4D's compute_fvd.py and VideoGPT load."""


class MissingWeights(Exception):
    """A metric's weights are not usable here; ``reason`` says why and which setting to change."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def torch_cache() -> str:
    """torch.hub's checkpoint folder: ``$TORCH_HOME/hub/checkpoints`` (torch's own default rules)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return os.path.join(home, "hub", "checkpoints")


def resolve(uri: str | None, default_name: str) -> str:
    """``uri``, or the torch cache's ``default_name`` when it is None."""
    return uri or os.path.join(torch_cache(), default_name)


def load_state_dict(path: str, what: str, setting: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``torch.save``d state dict at ``path`` (any storage URI); an absent or
    unreadable file raises :class:`MissingWeights`."""
    hint = f"set metrics.{setting} to a file (path or URI)"
    try:
        present = storage.exists(path)
    except (OSError, InputError, ValueError) as exc:
        raise MissingWeights(f"no {what} at {path} ({exc}); {hint}") from None
    if not present:
        raise MissingWeights(f"no {what} at {path}; {hint}")
    try:
        with storage.local_copy(path) as local:
            state = torch.load(local, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file, a pickle that is not plain tensors, ...
        raise MissingWeights(
            f"{path} is not a readable torch state dict ({type(exc).__name__}: {exc}); {hint}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint around the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MissingWeights(f"{path} does not hold a state dict of tensors; {hint}")
    return state


def check_keys(state: dict[str, torch.Tensor], module: torch.nn.Module, path: str, what: str, setting: str) -> None:
    """Load ``state`` into ``module`` strictly, turning a layout mismatch into :class:`MissingWeights`."""
    expected = module.state_dict()
    state = dict(state)
    for key in expected:  # BatchNorm counters predate some files (torch < 0.4.1); torch fills them in too
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        if wrong:
            k = wrong[0]
            parts.append(f"{k} has shape {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}")
        raise MissingWeights(f"{path} is not in the {what} layout ({'; '.join(parts)}); set metrics.{setting}")
    module.load_state_dict(state, strict=True)
