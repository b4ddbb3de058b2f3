"""The Fréchet distance between two sets of feature vectors (FID's and FVD's formula), in float64.

d² = |μ_a − μ_b|² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½)   (Dowson & Landau 1982; Heusel et al. 2017)

Σ is the unbiased sample covariance (``np.cov``, as StyleGAN-V's and Consistent4D's code compute
it). A set of a single vector has no sample covariance; it is taken as a point mass, Σ = 0, so that
two single vectors are |μ_a − μ_b|² apart: exactly what common-metrics-on-video-quality's
``frechet_distance`` returns for one video per side, and the Wasserstein-2 distance of two Dirac
distributions. Tr((Σ_a Σ_b)^½) is computed as the sum of the square roots of the eigenvalues of the
symmetric Σ_a^½ Σ_b Σ_a^½ (same eigenvalues as Σ_a Σ_b), which stays real and stable where
``scipy.linalg.sqrtm`` of the non-symmetric product returns complex parts on rank-deficient
covariances. Non-finite features are an error, never a NaN distance.
"""

from __future__ import annotations

import torch
from torch import Tensor


def covariance(x: Tensor) -> Tensor:
    """Unbiased covariance ``(D, D)`` of ``(N, D)`` samples; zeros for a single sample (a point mass)."""
    if len(x) == 1:
        return torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / (len(x) - 1)


def _psd_sqrt(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def trace_sqrt_product(a: Tensor, b: Tensor) -> Tensor:
    """Tr((a b)^½) for symmetric positive semi-definite ``a`` and ``b``."""
    root = _psd_sqrt(a)
    inner = root @ b @ root
    return torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between the Gaussians fitted to ``(N, D)`` and ``(M, D)`` feature sets."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not len(a) or not len(b):
        raise ValueError(
            f"feature sets must be (N, D) and (M, D) with N, M ≥ 1; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    a, b = a.double().cpu(), b.double().cpu()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("non-finite features: the Fréchet distance would be NaN")
    sa, sb = covariance(a), covariance(b)
    mean_term = (a.mean(dim=0) - b.mean(dim=0)).pow(2).sum()
    value = mean_term + torch.trace(sa) + torch.trace(sb) - 2.0 * trace_sqrt_product(sa, sb)
    return max(float(value), 0.0)  # ≥ 0 mathematically; rounding may leave -1e-12
