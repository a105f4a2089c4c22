"""Embedding networks: a timm backbone, a linear embedding head and an optional projector."""
from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from lib.config import ModelConfig


class ConvNet(nn.Module):
    """Four conv-BN-ReLU-pool blocks (the few-shot literature's "Conv-4"): fast on 28-px images."""

    def __init__(self, in_chans: int = 1, width: int = 64, depth: int = 4):
        super().__init__()
        layers, channels = [], in_chans
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.num_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def make_backbone(name: str, in_chans: int, pretrained: bool, drop_rate: float = 0.0) -> nn.Module:
    """A feature extractor returning pooled features (B, num_features)."""
    if name == "convnet":
        return ConvNet(in_chans)
    try:
        return timm.create_model(name, pretrained=pretrained, in_chans=in_chans, num_classes=0,
                                 drop_rate=drop_rate)
    except Exception as exc:  # timm raises OSError, RuntimeError or hub errors when offline
        if pretrained:
            raise RuntimeError(
                f"could not load pretrained weights for timm model '{name}' ({exc}). "
                "Offline, set model.pretrained: false, or put the weights in the Hugging Face "
                "cache (HF_HOME) on a machine with internet first."
            ) from exc
        raise


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear-BN-ReLU for every hidden size, a plain Linear to the last (the blog's projector)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(sizes[i + 1]), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SlicedHead(nn.Module):
    """A linear embedding layer stored as K independent slices of d/K outputs (Divide and
    Conquer): a learner that computes only its slice leaves the other slices' parameters
    without gradients, so the optimiser does not move them, momentum included."""

    def __init__(self, width: int, dim: int, slices: int):
        super().__init__()
        self.slices = nn.ModuleList(nn.Linear(width, dim // slices) for _ in range(slices))

    def forward(self, features: torch.Tensor, learner: int | None = None) -> torch.Tensor:
        if learner is not None:
            return self.slices[learner](features)
        return torch.cat([s(features) for s in self.slices], dim=1)


class EmbeddingNet(nn.Module):
    """backbone -> (linear head to d) -> (projector MLP).

    Training losses see the projector's output when there is one; `embed` returns
    the evaluation embedding, which skips the projector unless
    `projector_at_test` (the blog trained through a projector and dropped it at test).
    """

    def __init__(self, cfg: ModelConfig, in_chans: int, slices: int = 1):
        super().__init__()
        self.backbone = make_backbone(cfg.backbone, in_chans, cfg.pretrained, cfg.drop_rate)
        width = self.backbone.num_features
        if slices > 1:
            self.head = SlicedHead(width, cfg.embedding_dim, slices)
        else:
            self.head = nn.Linear(width, cfg.embedding_dim) if cfg.embedding_dim else nn.Identity()
        width = cfg.embedding_dim or width
        self.projector = _mlp([width, *cfg.projector]) if cfg.projector else None
        self.projector_at_test = cfg.projector_at_test
        self.normalize = cfg.normalize
        self.eval_dim = cfg.projector[-1] if cfg.projector and cfg.projector_at_test else width

    def forward(self, x: torch.Tensor, learner: int | None = None) -> torch.Tensor:
        """What the loss sees; with a `learner`, only that slice of a SlicedHead."""
        features = self.backbone(x)
        z = self.head(features, learner) if learner is not None else self.head(features)
        return self.projector(z) if self.projector is not None else z

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.backbone(x))
        if self.projector is not None and self.projector_at_test:
            z = self.projector(z)
        return F.normalize(z.float(), dim=1) if self.normalize else z.float()
