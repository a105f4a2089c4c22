"""One run's configuration: its sections (data, model, loss, ..., divide) and RunConfig.

RunConfig checks what its fields can say (types, ranges, the batch size against the sampler); what
the schema cannot see (named pml components and their arguments, the backbone, the augmentation,
the data set's options) needs torch, pytorch-metric-learning, timm and lib.data, which sit above
lib.config: `lib.train.check_run` checks it, added here (`add_run_check`) when lib.train is imported,
so every run is checked when its config is built, in every process that can train one.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lib.config.fields import (
    DEVICES,
    SAMPLER_NAMES,
    DatasetName,
    Float,
    Int,
    Kwargs,
    List,
    Mapping,
    NonNegInt,
    PosInt,
    Seed,
    _Invalid,
)
from lib.config.merge import set_dotted
from lib.config.messages import _Model, _Nested


# ----------------------------------------------------------------------------- run sections
class DataConfig(_Model):
    name: DatasetName = "omniglot"
    root: StrictStr | None = None  # None: $METRIC_DATA, else ./data
    image_size: Int | List[Int] | None = None  # None: the data set's default; a side, or [height, width]
    options: Kwargs = Field(default_factory=dict)  # data-set specific, validated by lib.data
    val_fraction: Float = Field(0.0, ge=0.0, lt=1.0)  # classes of train held out for validation (0: validate on test)
    augment: StrictStr | Kwargs = "none"  # a preset of lib.augment or its keyword arguments
    max_train_images: Annotated[int, Field(strict=True, ge=2)] | None = None  # class-disjoint subsample of train
    max_test_images: Annotated[int, Field(strict=True, ge=2)] | None = None

    @field_validator("image_size", mode="before")
    @classmethod
    def _positive_size(cls, value: Any) -> Any:
        def side(v: Any) -> bool:
            return type(v) is int and v >= 1
        if value is None or side(value) or (isinstance(value, (list, tuple)) and len(value) == 2
                                             and all(map(side, value))):
            return value
        raise ValueError(f"must be a size >= 1 or a list [height, width] of two, or null, got {value!r}")


class ModelConfig(_Model):
    backbone: StrictStr = "test_resnet"  # any timm model name, or "convnet" (lib.models.ConvNet)
    pretrained: StrictBool = False
    embedding_dim: PosInt | None = 128  # linear head on the pooled features; None: no head
    projector: List[PosInt] = Field(default_factory=list)  # MLP after the head, e.g. [1024, 256]
    projector_at_test: StrictBool = True  # False: evaluate on the features before the projector
    # L2-normalise the evaluation embedding; "per_slice": each divide-and-conquer slice on its own,
    # in training and evaluation, as Sanakoyeu et al.'s released code does (then scaled by 1/sqrt(K))
    normalize: Union[StrictBool, Literal["per_slice"]] = True
    drop_rate: Float = Field(0.0, ge=0.0, lt=1.0)
    # Pretrained EfficientNets: the stem and this many of the first stages stay as loaded (no
    # gradients, BatchNorm statistics kept), so their outputs for every training image under
    # `frozen_views` augmented draws are computed once and reused every epoch; 0 trains them all.
    frozen_stages: NonNegInt = 0
    frozen_views: PosInt = 4

    @field_validator("embedding_dim", mode="before")
    @classmethod
    def _no_zero_head(cls, value: Any) -> Any:
        if type(value) is int and value == 0:  # it used to mean "no head", under another cache key than null
            raise ValueError("0 is not a head size: use null for no head, or a size >= 1")
        return value


class ComponentConfig(_Model):
    """A pytorch-metric-learning class by name, with its keyword arguments."""

    name: StrictStr | None = None
    kwargs: Kwargs = Field(default_factory=dict)


class LossConfig(ComponentConfig):
    name: StrictStr | None = "TripletMarginLoss"
    lr: Annotated[Float, Field(gt=0)] | None = None  # own rate for learnable loss parameters (MarginLoss beta)


class DistanceConfig(ComponentConfig):
    name: StrictStr | None = "LpDistance"


class SamplerConfig(_Model):
    name: Literal[SAMPLER_NAMES] = "m_per_class"  # type: ignore[valid-type]  # pml MPerClassSampler, or "shuffle"
    m: PosInt = 4  # images per class in a batch, for m_per_class


class OptimConfig(_Model):
    name: StrictStr = "Adam"
    lr: Float = Field(1e-3, gt=0.0)
    weight_decay: Float = Field(0.0, ge=0.0)
    kwargs: Kwargs = Field(default_factory=dict)
    scheduler: StrictStr | None = None  # None, "step", "cosine", "plateau"
    scheduler_kwargs: Kwargs = Field(default_factory=dict)
    grad_clip: Annotated[Float, Field(gt=0)] | None = None


class TrainConfig(_Model):
    epochs: PosInt = 5
    batch_size: Annotated[int, Field(strict=True, ge=2)] = 128  # a pair at least
    steps_per_epoch: Annotated[PosInt, Field(le=100_000)] | None = None  # None: one pass over the training images
    seed: Seed = 0
    device: Literal[DEVICES] = "auto"  # type: ignore[valid-type]
    # The arithmetic of the forward pass, part of a run's identity: "bf16" is autocast on whatever
    # device trains it (CUDA, or the CPU's own bf16 autocast), "fp32" is plain float32 everywhere.
    # So a key names the precision its numbers came from, whichever machine made them.
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: StrictBool = True  # channels-last memory format (CPU and CUDA)
    compile: StrictBool = False
    num_workers: NonNegInt = 0  # DataLoader workers for file-based data sets
    threads: Annotated[PosInt, Field(le=1024)] | None = None  # torch CPU threads; None: torch's default
    diagnostics_every: PosInt = 4  # steps between the mined-distance / gradient-norm diagnostics


class EvalConfig(_Model):
    every: PosInt = 1  # epochs between validations (the last epoch is always evaluated)
    recall_ks: List[PosInt] = Field(default_factory=lambda: [1, 2, 4, 8], min_length=1)
    nmi: StrictBool = True
    oneshot: StrictBool = False  # Lake's 20 one-shot runs (Omniglot only)
    batch_size: PosInt = 512
    save_embeddings: StrictBool = True
    contraction_threshold: Float = Field(0.05, ge=0.0)  # spread ratio under which a run is flagged `contracted`
    # per-epoch validation on the first classes holding at most this many images (None: all); the
    # final test always scores the whole test split
    max_val_images: Annotated[int, Field(strict=True, ge=2)] | None = None


class DivideConfig(_Model):
    """Divide and Conquer (Sanakoyeu et al., CVPR 2019); clusters = 1 is ordinary training."""

    clusters: PosInt = 1  # K learners, each on a contiguous d/K slice of the embedding
    recluster_every: PosInt = 2  # M: epochs between k-means re-clusterings
    finetune_epochs: NonNegInt = 0  # the last epochs train the whole embedding as one learner
    # the first epochs train the whole embedding too, so that the first clustering sees a trained
    # embedding rather than a random one
    warmup_epochs: NonNegInt = 0
    features: StrictStr = "embedding"  # cluster on "embedding" (the paper) or "backbone" features (the authors' code)
    kmeans_restarts: PosInt = 5
    kmeans_iterations: PosInt = 20


# Run fields added after runs were first cached, each with its default, the value that means
# "as before" (tests/test_cache_key.py checks both): see RunConfig.key_dict.
KEY_NEUTRAL: dict[str, Any] = {
    "model.frozen_stages": 0,
    "model.frozen_views": 4,
    "divide.warmup_epochs": 0,
}


class RunConfig(_Model):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    miner: ComponentConfig = Field(default_factory=ComponentConfig)
    distance: DistanceConfig = Field(default_factory=DistanceConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    divide: DivideConfig = Field(default_factory=DivideConfig)

    @model_validator(mode="after")
    def _batches_fit_the_sampler(self, info: ValidationInfo) -> "RunConfig":
        if (info.context or {}).get("partial"):
            return self  # one layer of a profile: the merged run is checked later
        bs, m = self.train.batch_size, self.sampler.m
        if self.sampler.name == "m_per_class" and bs % m:
            raise _Invalid("train.batch_size", f"must be a multiple of sampler.m ({m}) for the m_per_class "
                                               f"sampler, got {bs}")
        for check in _RUN_CHECKS:
            check(self)
        return self

    def to_dict(self) -> dict:
        """Plain nested dicts, in field order."""
        return self.model_dump()

    def key_dict(self) -> dict:
        """`to_dict` less the fields added since runs were first cached that hold the value meaning
        "as before" (KEY_NEUTRAL): the run's cache key is a hash of this, so adding a field keeps
        every cached run, and only a run that uses the new field gets a new key."""
        d = self.to_dict()
        for path, neutral in KEY_NEUTRAL.items():
            *parents, leaf = path.split(".")
            node = d
            for part in parents:
                node = node[part]
            if type(node[leaf]) is type(neutral) and node[leaf] == neutral:
                del node[leaf]
        return d

    def with_overrides(self, overrides: dict | None = None, **dotted: Any) -> "RunConfig":
        """A copy with dotted-key overrides applied, e.g. {"optim.lr": 1e-4}."""
        merged = self.to_dict()
        for key, value in {**(overrides or {}), **dotted}.items():
            set_dotted(merged, key, copy.deepcopy(value))
        return RunConfig.validate_dict(merged)


# The checks of what the schema cannot see, run on every whole RunConfig (not on one layer of a
# profile); each raises ConfigError naming the dotted key. lib.train adds its own when imported.
_RUN_CHECKS: list[Callable[[RunConfig], None]] = []


def add_run_check(check: Callable[[RunConfig], None]) -> None:
    """Run `check(cfg)` on every whole RunConfig validated from now on (once, however often it is added)."""
    if check not in _RUN_CHECKS:
        _RUN_CHECKS.append(check)


def _check_layer(layer: dict) -> dict:
    """A run overlay (base, datasets.<name>, a chapter's runs or settings): its keys and
    values must fit RunConfig on their own; checks across sections wait for the merged run."""
    try:
        RunConfig.model_validate(layer, context={"partial": True})
    except ValidationError as exc:
        raise _Nested(exc, layer, RunConfig) from None
    return layer


RunLayer = Annotated[Mapping, AfterValidator(_check_layer)]
