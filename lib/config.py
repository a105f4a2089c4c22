"""Typed configuration: params/*.yaml profiles validated into dataclasses.

A profile holds `seeds`, a `base` run configuration, per-dataset overlays and
per-chapter settings. Everything is plain data; `resolve_run` merges the layers
and validates the result into a `RunConfig`, so a misspelt key or a wrong type
fails with one message that names the key and the valid choices.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO_ROOT / "params"


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads 1e-4 as a string; learning rates are written that way, so read it as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


class ConfigError(ValueError):
    """A parameter file or override that does not fit the schema."""


@dataclass
class DataConfig:
    name: str = "omniglot"
    root: str | None = None  # None: $METRIC_DATA, else ./data
    image_size: int | list[int] | None = None  # None: the data set's default
    options: dict = field(default_factory=dict)  # data-set specific, validated by lib.data
    val_fraction: float = 0.0  # classes of train held out for validation (0: validate on test)
    augment: str | dict = "none"  # a preset of lib.augment or its keyword arguments
    max_train_images: int | None = None  # class-disjoint subsample of train, for small profiles
    max_test_images: int | None = None


@dataclass
class ModelConfig:
    backbone: str = "test_resnet"  # any timm model name, or "convnet" (lib.models.ConvNet)
    pretrained: bool = False
    embedding_dim: int | None = 128  # linear head on the pooled features; None: no head
    projector: list[int] = field(default_factory=list)  # MLP after the head, e.g. [1024, 256]
    projector_at_test: bool = True  # False: evaluate on the features before the projector
    normalize: bool = True  # L2-normalise the evaluation embedding
    drop_rate: float = 0.0


@dataclass
class ComponentConfig:
    """A pytorch-metric-learning class by name, with its keyword arguments."""

    name: str | None = None
    kwargs: dict = field(default_factory=dict)


@dataclass
class LossConfig(ComponentConfig):
    name: str | None = "TripletMarginLoss"
    lr: float | None = None  # own learning rate for learnable loss parameters (MarginLoss beta)


@dataclass
class DistanceConfig(ComponentConfig):
    name: str | None = "LpDistance"


@dataclass
class SamplerConfig:
    name: str = "m_per_class"  # "m_per_class" (pml MPerClassSampler) or "shuffle"
    m: int = 4  # images per class in a batch, for m_per_class


@dataclass
class OptimConfig:
    name: str = "Adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    kwargs: dict = field(default_factory=dict)
    scheduler: str | None = None  # None, "step", "cosine", "plateau"
    scheduler_kwargs: dict = field(default_factory=dict)
    grad_clip: float | None = None


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 128
    steps_per_epoch: int | None = None  # None: one pass over the training images
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda"
    amp: bool = True  # bf16 autocast, on CUDA only
    channels_last: bool = True  # on CUDA only
    compile: bool = False
    num_workers: int = 0  # DataLoader workers for file-based data sets
    threads: int | None = None  # torch CPU threads; None: torch's default
    diagnostics_every: int = 4  # steps between the mined-distance / gradient-norm diagnostics


@dataclass
class EvalConfig:
    every: int = 1  # epochs between validations (the last epoch is always evaluated)
    recall_ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    nmi: bool = True
    oneshot: bool = False  # Lake's 20 one-shot runs (Omniglot only)
    batch_size: int = 512
    save_embeddings: bool = True
    collapse_threshold: float = 0.05  # spread ratio under which a run is flagged collapsed


@dataclass
class DivideConfig:
    """Divide and Conquer (Sanakoyeu et al., CVPR 2019); clusters = 1 is ordinary training."""

    clusters: int = 1  # K learners, each on a contiguous d/K slice of the embedding
    recluster_every: int = 2  # M: epochs between k-means re-clusterings
    finetune_epochs: int = 0  # the last epochs train the whole embedding as one learner
    features: str = "embedding"  # cluster on "embedding" (the paper) or "backbone" features (the authors' code)
    kmeans_restarts: int = 5
    kmeans_iterations: int = 20


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    miner: ComponentConfig = field(default_factory=ComponentConfig)
    distance: DistanceConfig = field(default_factory=DistanceConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    divide: DivideConfig = field(default_factory=DivideConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_overrides(self, overrides: dict | None = None, **dotted: Any) -> "RunConfig":
        """A copy with dotted-key overrides applied, e.g. {"optim.lr": 1e-4}."""
        merged = self.to_dict()
        for key, value in {**(overrides or {}), **dotted}.items():
            set_dotted(merged, key, value)
        return from_dict(RunConfig, merged)


@dataclass
class Profile:
    name: str
    description: str = ""
    seeds: list[int] = field(default_factory=lambda: [0])
    base: dict = field(default_factory=dict)
    datasets: dict = field(default_factory=dict)  # name -> run overlay
    chapters: dict = field(default_factory=dict)  # notebook stem -> settings

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
            set_dotted(merged, key.replace("__", "."), value)
        return from_dict(RunConfig, merged)

    def chapter(self, name: str) -> dict:
        if name not in self.chapters:
            raise ConfigError(
                f"profile '{self.name}' has no section chapters.{name}; "
                f"it has: {', '.join(sorted(self.chapters)) or 'none'}"
            )
        return copy.deepcopy(self.chapters[name])


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
    return key.strip(), yaml_load(raw)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(exc)
        allowed = " or ".join(_type_name(o) for o in options)
        raise ConfigError(f"{where}: expected {allowed}, got {value!r} ({type(value).__name__})")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r} ({type(value).__name__})")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r} ({type(value).__name__})")
        return copy.deepcopy(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r} ({type(value).__name__})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r} ({type(value).__name__})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r} ({type(value).__name__})")
        return value
    return value


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass `cls` from `data`, refusing unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in (data or {}).items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown key '{path}'{hint}; valid keys here: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def profile_path(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return PARAMS_DIR / f"{name_or_path}.yaml"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(
            f"no parameter file {path}; profiles available: {', '.join(available_profiles())}"
        )
    try:
        data = yaml_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    parent = data.pop("extends", None)
    if parent:
        data = deep_merge(_read_yaml(profile_path(parent)), data)
    return data


def load_profile(name_or_path: str | os.PathLike = "quick", overrides: dict | None = None) -> Profile:
    """Read params/<name>.yaml (following `extends:`), apply dotted overrides, validate."""
    path = profile_path(name_or_path)
    data = _read_yaml(path)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    data.setdefault("name", path.stem)
    profile = from_dict(Profile, data, "")
    # Validate every layer now, so a typo fails at load time, not an hour into a run.
    from lib.components import validate  # late: components imports pml, which imports this module's users

    for dataset in profile.datasets:
        validate(profile.run_config(dataset))
    for chapter, settings in profile.chapters.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"chapters.{chapter} must be a mapping")
        for dataset, layer in settings.get("runs", {}).items():
            validate(profile.run_config(dataset, layer))
    return profile
