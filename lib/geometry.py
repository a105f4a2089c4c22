"""The geometry behind distance-weighted sampling (Wu et al., ICCV 2017, Sec. 4).

Pairwise distances between points drawn uniformly on the unit sphere in n dimensions have
the density q(d) ∝ d^(n-2) [1 - d²/4]^((n-3)/2) on [0, 2]: they concentrate near √2 as n
grows. Sampling negatives uniformly therefore picks mostly distances near √2;
distance-weighted sampling draws them with weight 1/q(d) instead. Close negatives are also
the noisy ones: the gradient of any distance-based loss with respect to the negative
points along (f(n) - f(a)) / d(a,n), a direction that the noise in the embeddings swings
most when d is small (`negative_gradient_variance` measures that on a real network).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import betaln


def sphere_distance_density(d: np.ndarray, n: int) -> np.ndarray:
    """q(d) for uniform points on the unit sphere S^(n-1) in R^n, normalised on [0, 2].

    With t = d²/4 ~ Beta((n-1)/2, (n-1)/2), q(d) = (d/2) · Beta density of t at d²/4."""
    d = np.asarray(d, dtype=float)
    t = np.clip(d**2 / 4, 1e-300, 1 - 1e-16)
    a = (n - 1) / 2
    log_beta = (a - 1) * np.log(t) + (a - 1) * np.log1p(-t) - betaln(a, a)
    return np.where((d > 0) & (d < 2), d / 2 * np.exp(log_beta), 0.0)


def random_sphere_distances(n: int, points: int = 2000, seed: int = 0) -> np.ndarray:
    """Distances between all pairs of `points` uniform points on the unit sphere in R^n."""
    x = np.random.default_rng(seed).normal(size=(points, n))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sq = np.clip(2 - 2 * x @ x.T, 0, None)
    return np.sqrt(sq[np.triu_indices(points, 1)])


def pairwise_distances(embeddings: np.ndarray, points: int = 2000, seed: int = 0) -> np.ndarray:
    """Distances between all pairs of (up to `points`) rows, after L2 normalisation."""
    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) > points:
        x = x[np.random.default_rng(seed).choice(len(x), points, replace=False)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.sqrt(np.clip(2 - 2 * x @ x.T, 0, None)[np.triu_indices(len(x), 1)])


@torch.no_grad()
def negative_gradient_variance(trainer, split, pairs: int = 600, augmentations: int = 8, seed: int = 0) -> dict:
    """For random (anchor, negative) image pairs of different classes, the gradient of d(a,n)
    with respect to the negative's embedding, under `augmentations` random augmentations of
    both images through the trained network: its variance (trace of the covariance over
    augmentations) against the pair's mean distance. The gradient of the triplet and margin
    losses with respect to the negative is this vector times a weight that depends only on d."""
    rng = np.random.default_rng(seed)
    labels = split.labels
    a = rng.integers(0, len(labels), size=pairs * 2)
    n = rng.integers(0, len(labels), size=pairs * 2)
    keep = labels[a] != labels[n]
    a, n = a[keep][:pairs], n[keep][:pairs]
    trainer.model.eval()
    generator = torch.Generator(device=trainer.device).manual_seed(seed)
    grads, dists = [], []
    for _ in range(augmentations):
        emb = []
        for idx in (a, n):
            images = split.read(idx)
            extra = None if split.extra_channel is None else torch.from_numpy(split.extra_channel[idx])
            trainer.generator = generator
            x = trainer.prepare(images, extra, augment=True)
            emb.append(F.normalize(trainer.model.embed(x).float(), dim=1))
        diff = emb[1] - emb[0]
        d = diff.norm(dim=1, keepdim=True).clamp(min=1e-12)
        grads.append((diff / d).cpu().numpy())  # ∂ d(a,n) / ∂ f(n)
        dists.append(d[:, 0].cpu().numpy())
    g = np.stack(grads)  # (augmentations, pairs, dim)
    return {"distance": np.stack(dists).mean(axis=0), "variance": g.var(axis=0).sum(axis=1)}
