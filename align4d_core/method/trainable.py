"""Gaussians as optimisable parameters, with Adam state that survives densification.

Densification changes how many Gaussians there are, so the parameters and their Adam moments have
to be cut and extended together (as 3D Gaussian Splatting does); this module owns that
bookkeeping, so the strategy and the training loop only say which Gaussians to keep and add.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from align4d_core.config import OptimizeConfig
from align4d_core.scene.gaussians import Gaussians

FIELDS = ("means", "log_scales", "quats", "opacity_logits", "sh0")


def _learning_rates(config: OptimizeConfig) -> dict[str, float]:
    return {
        "means": config.position_lr[0],
        "log_scales": config.scaling_lr,
        "quats": config.rotation_lr,
        "opacity_logits": config.opacity_lr,
        "sh0": config.feature_lr,
    }


def position_lr(step: int, steps: int, config: OptimizeConfig) -> float:
    """Log-linear decay from the initial to the final position learning rate (3DGS, DG4D)."""
    start, end = config.position_lr
    progress = min(max(step / max(steps, 1), 0.0), 1.0)
    return math.exp((1 - progress) * math.log(start) + progress * math.log(end))


class TrainableGaussians:
    """The canonical Gaussians' parameters and their Adam optimiser (one group per attribute)."""

    def __init__(self, gaussians: Gaussians, config: OptimizeConfig) -> None:
        self.params = {name: torch.nn.Parameter(getattr(gaussians, name).detach().clone()) for name in FIELDS}
        lrs = _learning_rates(config)
        self.optimizer = torch.optim.Adam(
            [{"params": [self.params[n]], "lr": lrs[n], "name": n} for n in FIELDS], lr=0.0, eps=1e-15
        )

    def gaussians(self) -> Gaussians:
        return Gaussians(**self.params)

    def __len__(self) -> int:
        return int(self.params["means"].shape[0])

    def set_requires_grad(self, flag: bool) -> None:
        for p in self.params.values():
            p.requires_grad_(flag)

    def set_position_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if group["name"] == "means":
                group["lr"] = lr

    def update(self, keep: Tensor, added: Gaussians | None = None) -> None:
        """Keep the Gaussians where ``keep`` is True and append ``added``; Adam moments follow.

        Kept Gaussians keep their moments; added ones start from zero moments, as in 3DGS.
        """
        for group in self.optimizer.param_groups:
            name = group["name"]
            old = group["params"][0]
            new_value = old.detach()[keep]
            state = self.optimizer.state.pop(old, None)
            extra = getattr(added, name).detach() if added is not None else None
            if extra is not None:
                new_value = torch.cat([new_value, extra.to(new_value)])
            param = torch.nn.Parameter(new_value, requires_grad=old.requires_grad)
            if state is not None:
                for key in ("exp_avg", "exp_avg_sq"):
                    moment = state[key][keep]
                    if extra is not None:
                        moment = torch.cat([moment, torch.zeros_like(extra)])
                    state[key] = moment
                self.optimizer.state[param] = state
            group["params"][0] = param
            self.params[name] = param

    def state_tensors(self) -> dict[str, Tensor]:
        """Parameters and Adam moments as flat named tensors (for checkpoints)."""
        out = {f"gaussians.{n}": p.detach() for n, p in self.params.items()}
        for n, p in self.params.items():
            state = self.optimizer.state.get(p)
            if state:
                out[f"adam.{n}.exp_avg"] = state["exp_avg"]
                out[f"adam.{n}.exp_avg_sq"] = state["exp_avg_sq"]
                out[f"adam.{n}.step"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1)
        return out

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of :meth:`state_tensors`, resizing to the checkpoint's number of Gaussians."""
        for group in self.optimizer.param_groups:
            name = group["name"]
            old = group["params"][0]
            self.optimizer.state.pop(old, None)
            param = torch.nn.Parameter(tensors[f"gaussians.{name}"].clone(), requires_grad=old.requires_grad)
            if f"adam.{name}.exp_avg" in tensors:
                self.optimizer.state[param] = {
                    "step": tensors[f"adam.{name}.step"].reshape(()).clone(),
                    "exp_avg": tensors[f"adam.{name}.exp_avg"].clone(),
                    "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"].clone(),
                }
            group["params"][0] = param
            self.params[name] = param
