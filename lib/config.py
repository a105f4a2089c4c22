"""Typed configuration: params/*.yaml profiles validated into pydantic models.

A profile holds `seeds`, a `base` run configuration, per-dataset overlays and
per-chapter settings. Everything is plain data; `Profile.run_config` merges the layers
and validates the result into a `RunConfig`, so a misspelt key, a wrong type or an
impossible value (0 epochs, a negative learning rate) fails with one `ConfigError` that
names the dotted key and the valid choices — at load or override time, before anything runs.

The models are strict: "3" is not 3, 1.5 is not an integer, true is not 1 (a number field
takes an integer). They are frozen: `with_overrides` returns a validated copy.
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lib.errors import ConfigError

__all__ = [
    "ConfigError", "REPO_ROOT", "PARAMS_DIR", "DATASET_NAMES", "SAMPLER_NAMES", "DEVICES", "CHAPTER_NAMES",
    "NAME_PATTERN", "DataConfig", "ModelConfig", "ComponentConfig", "LossConfig", "DistanceConfig",
    "SamplerConfig", "OptimConfig", "TrainConfig", "EvalConfig", "DivideConfig", "RunConfig", "Profile",
    "available_profiles", "deep_merge", "load_profile", "parse_assignment", "profile_path", "set_dotted",
    "yaml_load",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO_ROOT / "params"

# lib.data.load_dataset's registry (its DATASETS plus 'omniglot_oneshot'); kept here so that
# validating a profile needs no data code. tests/test_config_values.py checks they agree.
DATASET_NAMES = ("omniglot", "omniglot_oneshot", "beluga", "cub200", "cars196", "sop", "folder", "csv")
SAMPLER_NAMES = ("m_per_class", "shuffle")  # lib.components.SAMPLERS
DEVICES = ("auto", "cpu", "cuda")
# notebooks/<stem>.ipynb read chapters.<stem>; `published` holds the papers' numbers.
CHAPTER_NAMES = ("00_quickstart", "00b_mechanics", "01_beluga_collapse", "02_mining",
                 "03_distance_weighted", "04_divide_and_conquer", "05_reidentification", "06_oneshot_record",
                 "07_claims_ledger", "published")
NAME_PATTERN = r"[A-Za-z0-9_]+"  # profile names and chapters' `tables_from`


# The most values a parameter file's aliases (*name) may expand to: the profiles share recipes
# through a few aliases (hundreds of values); a "billion laughs" bomb of 600 bytes expands to 10^8.
MAX_YAML_VALUES = 100_000


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads 1e-4 as a string; learning rates are written that way, so read it as a float.

    Stricter than SafeLoader: a key given twice in one mapping, an alias that refers to a value
    holding it, and aliases that expand to more than MAX_YAML_VALUES values are refused."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._open_anchors: set[str] = set()

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self._open_anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"the alias *{event.anchor} refers to a value that holds it", event.start_mark)
            return super().compose_node(parent, index)
        anchor = self.peek_event().anchor
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._open_anchors.discard(anchor)

    def construct_document(self, node: Any) -> Any:
        _count_values(node, {})
        return super().construct_document(node)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)$"),
    list("-+0123456789"),
)


def _count_values(node: Any, counted: dict[int, int]) -> int:
    """How many values `node` stands for once every alias in it is expanded (an aliased node is
    one object in the composed graph: counted once, used many times)."""
    if id(node) in counted:
        return counted[id(node)]
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_count_values(child, counted) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_count_values(k, counted) + _count_values(v, counted) for k, v in node.value)
    if total > MAX_YAML_VALUES:
        raise yaml.constructor.ConstructorError(
            None, None, f"its aliases (*name) expand to more than {MAX_YAML_VALUES} values; write the repeated "
            "settings out, or share fewer", node.start_mark)
    counted[id(node)] = total
    return total


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: 'line L, column C: problem'."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return where + " ".join(str(exc.problem or exc.context or "invalid YAML").split())
    return " ".join(str(exc).split())


def yaml_load(text: str) -> Any:
    """`text` read as YAML. Raises yaml.YAMLError (RecursionError for nesting too deep for Python
    is raised as one too)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except RecursionError:
        raise yaml.YAMLError("values nested too deeply") from None


# ----------------------------------------------------------------------------- field types
T = TypeVar("T")


def _listify(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


List = Annotated[list[T], BeforeValidator(_listify)]  # a list; a tuple given in Python code is taken as one
Int = Annotated[int, Field(strict=True)]
PosInt = Annotated[int, Field(strict=True, ge=1)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
# an int is taken (as a float); a bool, "1", nan or inf is not
Float = Annotated[float, Field(strict=True, allow_inf_nan=False)]
SEED_MAX = 2**32 - 1  # numpy's seeds; the trainer's per-epoch seeds (seed * 100003 + epoch) stay within torch's
Seed = Annotated[int, Field(strict=True, ge=0, le=SEED_MAX)]
Mapping = dict[str, Any]


def _finite(value: Any, key: str = "") -> None:
    """Every number in `value` (a mapping's values, a list's items, at any depth) is finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(key, f"must be a finite number, got {value!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite(v, f"{key}[{i}]")


def _finite_mapping(value: dict) -> dict:
    _finite(value)
    return value


# keyword arguments and options passed on to a class or a loader: any keys, finite numbers
Kwargs = Annotated[Mapping, AfterValidator(_finite_mapping)]
DatasetName = Literal[DATASET_NAMES]  # type: ignore[valid-type]
ChapterName = Literal[CHAPTER_NAMES]  # type: ignore[valid-type]
NAME_MAX = 100  # characters of a profile name: a file and folder name on every file system
ProfileName = Annotated[str, StringConstraints(strict=True, pattern=rf"^{NAME_PATTERN}$", max_length=NAME_MAX)]


class _Nested(ValueError):
    """A run layer that failed RunConfig's validation: translated with the layer's path as prefix."""

    def __init__(self, error: ValidationError, data: Any):
        super().__init__(str(error))
        self.error, self.data = error, data


class _Invalid(ValueError):
    """A check across fields: `key` is relative to the model that raised it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key, self.message = key, message


def _check_layer(layer: dict) -> dict:
    """A run overlay (base, datasets.<name>, a chapter's runs or settings): its keys and
    values must fit RunConfig on their own; checks across sections wait for the merged run."""
    try:
        RunConfig.model_validate(layer, context={"partial": True})
    except ValidationError as exc:
        raise _Nested(exc, layer) from None
    return layer


RunLayer = Annotated[Mapping, AfterValidator(_check_layer)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_message(exc, type(self), data)) from None

    # Nested sections are validated by pydantic-core directly, not through this __init__ (the
    # flag pydantic's own BaseModel.__init__ and RootModel.__init__ carry); so only a direct
    # call, ModelConfig(embedding_dim=0), turns the error into a ConfigError here.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def validate_dict(cls, data: Any, context: dict | None = None):
        """`cls` from plain data; ConfigError naming the dotted key if it does not fit."""
        try:
            return cls.model_validate(data, context=context)
        except ValidationError as exc:
            raise ConfigError(_message(exc, cls, data)) from None


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
        check_run(self)
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


# timm models the profiles name, taken without importing timm (2 s), so that a chapter rendered from
# the cache never imports it; tests/test_config_probes.py checks that timm has each of them.
TIMM_BACKBONES = ("test_resnet", "resnet18", "resnet50", "resnet50.tv_in1k", "efficientnet_lite0")
_checked_runs: set[str] = set()


def check_run(cfg: RunConfig) -> None:
    """What the schema cannot see, checked where a run's config is built rather than when it
    trains: the named components (loss, miner, distance, optimiser, scheduler) are built once
    with their keyword arguments, the backbone is 'convnet' or a timm model, the augmentation a
    preset or BatchAugment's arguments, and the data options the loader's. Raises ConfigError
    naming the dotted key. Each distinct combination is checked once per process; the imports
    (torch, pytorch-metric-learning, lib.data) happen here, never when lib.config is imported."""
    d = cfg.to_dict()
    fingerprint = json.dumps([d["loss"], d["miner"], d["distance"], d["optim"], d["model"]["backbone"],
                              d["data"]["augment"], d["data"]["name"], sorted(d["data"]["options"])],
                             sort_keys=True, default=str)
    if fingerprint in _checked_runs:
        return
    from lib import components  # lib.components imports neither this module nor lib.data
    from lib.augment import AUGMENT_PRESETS, make_augment
    from lib.data.registry import loader_options

    components.validate(cfg)
    backbone = cfg.model.backbone
    if backbone != "convnet" and backbone not in TIMM_BACKBONES:
        import timm

        if not timm.is_model(backbone):
            raise _Invalid("model.backbone", f"unknown backbone {backbone!r}; give convnet or a timm model name "
                                             f"(timm.list_models()){_hint(backbone, timm.list_models())}")
    augment = cfg.data.augment
    if isinstance(augment, str) and augment not in AUGMENT_PRESETS:
        raise _Invalid("data.augment", f"unknown preset {augment!r}{_hint(augment, list(AUGMENT_PRESETS))}; "
                                       f"presets: {', '.join(AUGMENT_PRESETS)}")
    if isinstance(augment, dict):
        from lib.augment import BatchAugment

        accepted = components._parameters(BatchAugment)
        components._check_arguments("data.augment", "BatchAugment", "BatchAugment", accepted,
                                    {k: v for k, v in augment.items() if k in accepted})
        try:
            make_augment(augment)
        except (TypeError, ValueError) as exc:
            raise _Invalid("data.augment", " ".join(str(exc).split())) from None
    valid = loader_options(cfg.data.name)
    unknown = sorted(set(cfg.data.options) - set(valid))
    if unknown:
        raise _Invalid("data.options", f"{cfg.data.name} has no option {', '.join(unknown)}"
                                       f"{_hint(unknown[0], valid)}; valid options: {', '.join(valid) or 'none'}")
    _checked_runs.add(fingerprint)


# ----------------------------------------------------------------------------- chapter sections
class _Chapter(_Model):
    """Settings every chapter may have (lib.study.Chapter reads them)."""

    dataset: DatasetName | None = None  # the chapter's default data set
    runs: dict[DatasetName, RunLayer] = Field(default_factory=dict)  # data set -> run overlay


def _subset(names: list[str] | None, valid: Any, key: str, of: str) -> None:
    unknown = [n for n in names or [] if n not in valid]
    if unknown:
        raise _Invalid(key, f"{', '.join(map(repr, unknown))} not in {of}; it has: {', '.join(map(str, valid))}")


class QuickstartChapter(_Chapter):
    pass


class MechanicsChapter(_Chapter):
    """The losses, miners and Wu's sampler in plain torch (lib.mechanics) against pml's; trains nothing."""

    random_batches: PosInt = 5  # random batches (seeds 0, 1, ...) on which each piece is checked against pml


class PretrainedAblations(_Model):
    """Chapter 1's blog and some of its ablations again, on an ImageNet-pretrained backbone."""

    backbone: RunLayer  # the overlay that makes a run pretrained (model.backbone, pretrained, frozen_stages)
    ablations: List[StrictStr] = Field(default_factory=list)  # names in the chapter's `ablations`


class BelugaCollapseChapter(_Chapter):
    blog: RunLayer  # the blog's configuration
    margins: List[Float]  # margins tried besides the blog's
    ablations: dict[str, RunLayer]  # one factor at a time, each an overlay on `blog`
    only_ablations: List[StrictStr] = None  # type: ignore[assignment]  # absent: all of them
    dimensions: List[PosInt]  # projector sizes evaluated in their own space (the blog's hypothesis)
    metric: StrictStr
    max_fix_steps: NonNegInt
    confirmation_seeds: List[Seed] = Field(min_length=1)  # fresh seeds that test the chosen fix
    tsne_points: PosInt
    pretrained: PretrainedAblations | None = None  # the blog's own regime: an ImageNet-pretrained backbone

    @model_validator(mode="after")
    def _known_ablations(self) -> "BelugaCollapseChapter":
        _subset(self.only_ablations, list(self.ablations), "only_ablations", "ablations")
        if self.pretrained is not None:
            _subset(self.pretrained.ablations, list(self.ablations), "pretrained.ablations", "ablations")
        return self


class MarginSweep(_Model):
    dataset: DatasetName
    strategies: List[StrictStr]
    margins: List[Float]


class MiningChapter(_Chapter):
    datasets: List[DatasetName]
    margin: Float
    strategies: dict[str, RunLayer]
    margin_sweep: MarginSweep

    @model_validator(mode="after")
    def _known_strategies(self) -> "MiningChapter":
        _subset(self.margin_sweep.strategies, list(self.strategies), "margin_sweep.strategies", "strategies")
        return self


class PretrainedMethods(_Model):
    """Some of chapter 3's methods again on an ImageNet-pretrained backbone, against scratch."""

    dataset: DatasetName
    backbone: RunLayer  # the overlay that makes a run pretrained
    methods: List[StrictStr] = Field(min_length=1)  # names in the chapter's `methods`
    # one of `methods` also trained with every stage fine-tuned (model.frozen_stages: 0): what freezing costs
    whole_network: StrictStr | None = None


class DistanceWeightedChapter(_Chapter):
    datasets: List[DatasetName]
    methods: dict[str, RunLayer]
    sphere_dims: List[PosInt]
    gradient_pairs: PosInt
    gradient_augmentations: PosInt
    pretrained: PretrainedMethods | None = None

    @model_validator(mode="after")
    def _known_methods(self) -> "DistanceWeightedChapter":
        if self.pretrained is not None:
            _subset(self.pretrained.methods, list(self.methods), "pretrained.methods", "methods")
            _subset([self.pretrained.whole_network] if self.pretrained.whole_network else [],
                    self.pretrained.methods, "pretrained.whole_network", "pretrained.methods")
        return self


class Anchor(_Model):
    """A published one-shot accuracy, and whether it was measured on Lake's 20 runs themselves."""

    label: StrictStr
    accuracy: Float = Field(ge=0.0, le=1.0)
    on_these_runs: StrictBool


class GridPoint(_Model):
    clusters: PosInt
    recluster_every: PosInt


class DivideAndConquerChapter(_Chapter):
    datasets: List[DatasetName]
    recipe: RunLayer
    clusters: List[PosInt]
    recluster_every: List[PosInt]
    grid_at: GridPoint
    tsne_points: PosInt
    budget_dataset: DatasetName  # where one learner and the grid's centre are also run longer
    budgets: List[PosInt] = Field(min_length=1)  # multiples of the chapter's epochs, 1 first
    # The paper clusters a pretrained network's features. From scratch, the nearest is to train the
    # whole embedding first: the budget runs add the centre with its first N epochs on the whole
    # embedding (divide.warmup_epochs, scaled with the budget), and the ledger judges that arm.
    warm_start_epochs: NonNegInt = 0


class BorrowedRecipe(_Model):
    """A run another chapter trains: {chapter, settings: [keys]} or {chapter, divide: {clusters, recluster_every}};
    `overlay: [keys]` adds a second layer of that chapter's settings (its pretrained backbone, say)."""

    chapter: ChapterName
    settings: List[StrictStr] = None  # type: ignore[assignment]
    overlay: List[StrictStr] = None  # type: ignore[assignment]
    divide: GridPoint = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _one_of(self) -> "BorrowedRecipe":
        if ("settings" in self.model_fields_set) == ("divide" in self.model_fields_set):
            raise _Invalid("", "give either settings: [keys] or divide: {clusters, recluster_every}, not both or neither")
        return self


class ReidentificationChapter(_Chapter):
    recipes: dict[str, BorrowedRecipe]
    only_recipes: List[StrictStr] = None  # type: ignore[assignment]  # absent: all of them
    divided: StrictStr
    single: StrictStr
    competition_k: PosInt
    humpback_k: PosInt
    catalogue_photos: List[PosInt | None]
    new_fraction: Float = Field(gt=0.0, lt=1.0)
    protocol_seed: Seed
    examples: NonNegInt
    blog_map: Float = Field(ge=0.0, le=1.0)
    humpback_gain: Float
    winners_map: Float | None = Field(None, ge=0.0, le=1.0)  # Where's Whale-do winners' mAP@20, shown beside ours
    # {pretrained recipe: the same recipe from scratch}, compared paired by seed (one Holm family)
    pretrained_pairs: dict[str, StrictStr] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_recipes(self) -> "ReidentificationChapter":
        _subset(self.only_recipes, list(self.recipes), "only_recipes", "recipes")
        chosen = self.only_recipes if self.only_recipes is not None else list(self.recipes)
        for key in ("divided", "single"):
            _subset([getattr(self, key)], chosen, key, "the recipes this profile runs")
        _subset([n for pair in self.pretrained_pairs.items() for n in pair], list(self.recipes),
                "pretrained_pairs", "recipes")
        return self


class OneshotRecordChapter(_Chapter):
    start: RunLayer  # the road's first recipe, an overlay on the profile's Omniglot run
    ingredients: dict[str, RunLayer]  # tried in this order, each an overlay on the recipe so far
    select_on: StrictStr  # a per-epoch validation metric of the run's history (background classes only)
    # Then test-time views, tried in this order the same way: each adds (dy, dx) pixel shifts to the
    # views kept so far (the image itself always is one); an image's embedding is their mean.
    test_time: dict[str, List[Annotated[List[Int], Field(min_length=2, max_length=2)]]] = Field(default_factory=dict)
    minimal_backgrounds: List[Literal["small1", "small2"]]  # Lake's 5-alphabet sets, for the chosen recipe
    anchors: List[Anchor]


class ClaimsLedgerChapter(_Chapter):
    tables_from: ProfileName  # the profile whose tables the ledger reads


class Chapters(_Model):
    """chapters.<notebook stem>: one typed section per notebook, each optional."""

    quickstart: QuickstartChapter = Field(None, alias="00_quickstart")
    mechanics: MechanicsChapter = Field(None, alias="00b_mechanics")
    beluga_collapse: BelugaCollapseChapter = Field(None, alias="01_beluga_collapse")
    mining: MiningChapter = Field(None, alias="02_mining")
    distance_weighted: DistanceWeightedChapter = Field(None, alias="03_distance_weighted")
    divide_and_conquer: DivideAndConquerChapter = Field(None, alias="04_divide_and_conquer")
    reidentification: ReidentificationChapter = Field(None, alias="05_reidentification")
    oneshot_record: OneshotRecordChapter = Field(None, alias="06_oneshot_record")
    claims_ledger: ClaimsLedgerChapter = Field(None, alias="07_claims_ledger")
    # Not a notebook: the papers' numbers, data set -> {metric: value}, for code that compares.
    published: dict[DatasetName, dict[str, Float]] = Field(None)

    def as_dict(self) -> dict:
        """The sections the profile gives, as plain data keyed by notebook stem."""
        return self.model_dump(by_alias=True, exclude_unset=True)


assert tuple(f.alias or n for n, f in Chapters.model_fields.items()) == CHAPTER_NAMES


# ----------------------------------------------------------------------------- profile
class Profile(_Model):
    name: ProfileName
    description: StrictStr = ""
    budget_minutes: Union[PosInt, None] = None  # what run_all.sh may take from an empty cache on 2 CPU cores
    figure_formats: List[Literal["png", "svg", "pdf"]] = Field(default_factory=lambda: ["png", "svg"], min_length=1)
    seeds: List[Seed] = Field(default_factory=lambda: [0], min_length=1)
    base: RunLayer = Field(default_factory=dict)
    datasets: dict[DatasetName, RunLayer] = Field(default_factory=dict)  # name -> run overlay
    chapters: Chapters = Field(default_factory=Chapters)  # notebook stem -> settings

    @model_validator(mode="after")
    def _chapters_name_known_datasets(self) -> "Profile":
        given = self.chapters.as_dict()
        for stem, section in given.items():
            if stem == "published":
                continue
            where = f"chapters.{stem}"
            _subset([section["dataset"]] if section.get("dataset") else [], list(self.datasets),
                    f"{where}.dataset", "this profile's datasets")
            _subset(section.get("datasets"), list(self.datasets), f"{where}.datasets", "this profile's datasets")
            _subset(list(section.get("runs", {})), list(self.datasets), f"{where}.runs", "this profile's datasets")
            if "margin_sweep" in section:
                _subset([section["margin_sweep"]["dataset"]], list(self.datasets), f"{where}.margin_sweep.dataset",
                        "this profile's datasets")
            for name, spec in section.get("recipes", {}).items():
                _subset([spec["chapter"]], list(given), f"{where}.recipes.{name}.chapter", "this profile's chapters")
                node: Any = given[spec["chapter"]]
                for key in spec.get("settings", []):
                    if not isinstance(node, dict) or key not in node:
                        raise _Invalid(f"{where}.recipes.{name}.settings",
                                       f"chapters.{spec['chapter']} has no setting {'.'.join(spec['settings'])}")
                    node = node[key]
        return self

    def run_config(self, dataset: str, *layers: dict, **dotted: Any) -> RunConfig:
        """Base, then the data set's overlay, then each layer, then dotted overrides."""
        if dataset not in self.datasets:
            raise ConfigError(
                f"profile '{self.name}' has no settings for data set '{dataset}'; "
                f"it has: {', '.join(sorted(self.datasets)) or 'none'}"
            )
        merged: dict = {}
        for layer in (self.base, self.datasets[dataset], *layers):
            merged = deep_merge(merged, layer)
        merged = deep_merge(merged, {"data": {"name": dataset}})
        for key, value in dotted.items():
            set_dotted(merged, key.replace("__", "."), copy.deepcopy(value))
        return RunConfig.validate_dict(merged)

    def readers(self) -> list[str]:
        """The chapters that read what other chapters wrote: borrowed runs (`recipes`) or every
        chapter's per-seed tables (the ledger's `tables_from`). run_all.sh runs them last."""
        return [stem for stem, section in self.chapters.as_dict().items()
                if stem != "published" and ("recipes" in section or "tables_from" in section)]

    def chapter(self, name: str) -> dict:
        """chapters.<name> as a plain dict (a copy): the keys the profile gives."""
        sections = self.chapters.as_dict()
        if name not in sections:
            raise ConfigError(
                f"profile '{self.name}' has no section chapters.{name}; "
                f"it has: {', '.join(sorted(sections)) or 'none'}"
            )
        return copy.deepcopy(sections[name])


# ----------------------------------------------------------------------------- error messages
def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _members(tp: Any) -> list:
    tp = _strip(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [_strip(a) for a in typing.get_args(tp)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _field(model: type[BaseModel], key: Any) -> Any:
    for n, f in model.model_fields.items():
        if (f.alias or n) == key:
            return f.annotation if not f.metadata else Annotated[(f.annotation, *f.metadata)]
    return None


def _noun(tp: Any) -> str:
    tp = _strip(tp)
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if _is_model(tp):
        return "a section (mapping)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(origin or tp, getattr(tp, "__name__", str(tp)))


def _hint(value: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _got(value: Any) -> str:
    return f"got {value!r} ({type(value).__name__})"


def _message(exc: ValidationError, root: type[BaseModel], data: Any) -> str:
    """pydantic's first error as one sentence naming the dotted key, in the words the old
    hand-written validator used (the tests and the docs quote them)."""
    error = exc.errors()[0]
    loc, kind, ctx = error["loc"], error["type"], error.get("ctx") or {}
    tp: Any = root
    parts: list[str] = []
    value = data
    parent: type[BaseModel] | None = None
    nullable = False
    key_error = None  # a dict key that failed its own type (loc ..., key, '[key]')
    i = 0
    while i < len(loc):
        item = loc[i]
        members = _members(tp)
        nullable = type(None) in members
        members = [m for m in members if m is not type(None)]
        if len(members) > 1:  # a union: report against the whole field, as one choice of types
            break
        base = members[0]
        origin = typing.get_origin(base)
        if _is_model(base):
            parent = base
            parts.append(str(item))
            value = value.get(item) if isinstance(value, dict) else None
            tp = _field(base, item)
            if tp is None:
                break  # an unknown key
        elif origin is list:
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
            value = value[item] if isinstance(value, list) and isinstance(item, int) and item < len(value) else None
            tp = typing.get_args(base)[0]
        elif origin is dict:
            key_tp, value_tp = typing.get_args(base)
            if i + 1 < len(loc) and loc[i + 1] == "[key]":
                key_error, tp = item, key_tp
                break
            parts.append(str(item))
            value = value.get(item) if isinstance(value, dict) else None
            tp = value_tp
        else:
            break
        i += 1
    path = ".".join(parts)
    if "input" in error and i == len(loc):
        value = error["input"]  # the walk reached the failing value: pydantic's own copy of it

    if kind == "extra_forbidden":
        valid = _keys(parent) if parent else []
        return f"unknown key '{path}'{_hint(loc[-1], valid)}; valid keys here: {', '.join(valid)}"
    if kind == "missing":
        return f"missing key '{path}': this section requires it"
    if key_error is not None:
        choices = list(typing.get_args(_strip(tp))) if typing.get_origin(_strip(tp)) is Literal else []
        if choices:
            return (f"{path}: unknown key {key_error!r}{_hint(key_error, choices)}; "
                    f"valid choices: {', '.join(choices)}")
        return f"{path}: key {key_error!r}: {error['msg']}"
    if i < len(loc):  # stopped at a union
        for other in exc.errors():  # a member that took the value's type but refused a value in it
            cause = (other.get("ctx") or {}).get("error")
            if other["type"] == "value_error" and isinstance(cause, _Invalid) and other["loc"][:i] == loc[:i]:
                return f"{'.'.join(p for p in (path, cause.key) if p)}: {cause.message}"
        members = _members(tp)
        return f"{path}: expected {' or '.join(_noun(m) for m in members)}, {_got(value)}"
    if kind in ("value_error", "assertion_error"):
        cause = ctx.get("error")
        if isinstance(cause, _Nested):
            inner = _message(cause.error, RunConfig, cause.data)
            return f"{path}: {inner}" if path else inner
        if isinstance(cause, _Invalid):
            key = ".".join(p for p in (path, cause.key) if p)
            return f"{key}: {cause.message}" if key else cause.message
        return f"{path}: {cause}" if path else str(cause)
    if kind == "literal_error":
        choices = [str(c) for c in typing.get_args(_strip(tp))] if typing.get_origin(_strip(tp)) is Literal else []
        if not isinstance(value, str):
            return f"{path}: expected one of {', '.join(choices)}, {_got(value)}"
        return f"{path}: unknown value {value!r}{_hint(value, choices)}; valid choices: {', '.join(choices)}"
    if kind == "finite_number":
        return f"{path}: must be a finite number, got {value!r}"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"{path}: must be {bounds[kind]} {limit}{' (or null)' if nullable else ''}, got {value!r}"
    if kind == "string_pattern_mismatch":
        return f"{path}: {value!r} must match {NAME_PATTERN} (letters, digits and underscores only)"
    if kind == "too_short":
        return f"{path}: needs at least {ctx.get('min_length')} item(s), got {value!r}"
    if kind == "bool_type":
        return f"{path}: expected true or false, {_got(value)}"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind in ("int_from_float", "model_attributes_type"):
        return f"{path}: expected {_noun(tp) if not nullable else _noun(tp) + ' or null'}, {_got(value)}"
    return f"{path}: {error['msg']}, {_got(value)}"


# ----------------------------------------------------------------------------- plain data helpers
def deep_merge(base: dict, overlay: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not key.endswith("kwargs"):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{key}': '{part}' is not a section")
    node[parts[-1]] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """'optim.lr=1e-4' -> ('optim.lr', 0.0001); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value, e.g. optim.lr=1e-4")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': the value is not valid YAML: {_yaml_problem(exc)}") from None


# ----------------------------------------------------------------------------- files
def profile_path(name_or_path: str | os.PathLike) -> Path:
    """params/<name>.yaml for a profile name; a .yaml/.yml path as given. Either way the
    profile's name (the file's stem) must be letters, digits and underscores."""
    path = Path(name_or_path)
    name = path.stem if path.suffix in (".yaml", ".yml") else str(name_or_path)
    if len(name) > NAME_MAX:
        raise ConfigError(f"profile name '{name[:20]}...' is {len(name)} characters long; at most {NAME_MAX}")
    if path.suffix in (".yaml", ".yml"):
        if not re.fullmatch(NAME_PATTERN, path.stem):
            raise ConfigError(f"parameter file {path}: its name '{path.stem}' is the profile's name and must "
                              f"match {NAME_PATTERN} (letters, digits and underscores only)")
        return path
    if not re.fullmatch(NAME_PATTERN, str(name_or_path)):
        raise ConfigError(f"profile name {str(name_or_path)!r} must match {NAME_PATTERN} (letters, digits and "
                          f"underscores only): give a name from {PARAMS_DIR} ({', '.join(available_profiles())}) "
                          f"or the path of a .yaml file")
    return PARAMS_DIR / f"{name_or_path}.yaml"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The mapping of a parameter file, merged over the file it `extends` (`chain`: the files
    that extend this one, to refuse a cycle). Every problem is one ConfigError line."""
    try:
        if path.is_dir():
            raise ConfigError(f"{path} is a folder, not a parameter file")
        if not path.exists():
            raise ConfigError(f"no parameter file {path}; profiles available: {', '.join(available_profiles())}")
        blob = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte 0x{blob[exc.start]:02x} at offset {exc.start})") from None
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_problem(exc)}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    parent = data.pop("extends", None)
    if parent is None or parent == "":
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected a profile name or the path of a .yaml file, "
                          f"got {parent!r} ({type(parent).__name__})")
    chain = (*chain, path)
    parent_path = profile_path(parent)
    try:
        seen = [p.resolve() for p in chain]
        cycle = parent_path.resolve() in seen
    except OSError:
        cycle = False  # the parent cannot be resolved: reading it says why
    if cycle:
        start = seen.index(parent_path.resolve())
        raise ConfigError(f"{chain[0]}: extends makes a cycle: "
                          f"{' -> '.join(str(p) for p in (*chain[start:], parent_path))}")
    return deep_merge(_read_yaml(parent_path, chain), data)


def _chapter_runs(stem: str, section: dict) -> list[tuple[str, str, list[dict]]]:
    """(where, dataset, layers) of every run a chapter's settings describe, to validate them
    merged at load time: its `runs`, and its settings that are run overlays."""
    runs = section.get("runs", {})
    out = [(f"chapters.{stem}.runs.{ds}", ds, [layer]) for ds, layer in runs.items()]
    one = [section["dataset"]] if section.get("dataset") else []
    for ds in section.get("datasets", one):
        base = [runs.get(ds, {})]
        if "blog" in section:
            out.append((f"chapters.{stem}.blog", ds, base + [section["blog"]]))
            out += [(f"chapters.{stem}.ablations.{n}", ds, base + [section["blog"], layer])
                    for n, layer in section.get("ablations", {}).items()]
        for key in ("strategies", "methods"):
            out += [(f"chapters.{stem}.{key}.{n}", ds, base + [layer]) for n, layer in section.get(key, {}).items()]
        if "recipe" in section:
            out.append((f"chapters.{stem}.recipe", ds, base + [section["recipe"]]))
    return out


def load_profile(name_or_path: str | os.PathLike = "quick", overrides: dict | None = None) -> Profile:
    """Read params/<name>.yaml (following `extends:`), apply dotted overrides, validate."""
    path = profile_path(name_or_path)
    data = _read_yaml(path)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, copy.deepcopy(value))
    data.setdefault("name", path.stem)
    profile = Profile.validate_dict(data)
    # Validate every run the profile describes now, merged: building its RunConfig also builds its
    # named components once (check_run), so a typo fails at load time, not an hour into a run.
    runs = [(f"datasets.{ds}", ds, []) for ds in profile.datasets]
    for stem, section in profile.chapters.as_dict().items():
        if stem != "published":
            runs += _chapter_runs(stem, section)
    for where, dataset, layers in runs:
        try:
            profile.run_config(dataset, *layers)
        except ConfigError as exc:
            raise ConfigError(f"profile '{profile.name}', {where} (data set {dataset}): {exc}") from None
    return profile
