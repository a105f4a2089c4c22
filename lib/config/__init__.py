"""Typed configuration: params/*.yaml profiles validated into pydantic models.

A profile holds `seeds`, a `base` run configuration, per-dataset overlays and
per-chapter settings. Everything is plain data; `Profile.run_config` merges the layers
and validates the result into a `RunConfig`, so a misspelt key, a wrong type or an
impossible value (0 epochs, a negative learning rate) fails with one `ConfigError` that
names the dotted key and the valid choices — at load or override time, before anything runs.

The models are strict: "3" is not 3, 1.5 is not an integer, true is not 1 (a number field
takes an integer). They are frozen: `with_overrides` returns a validated copy.

The package, a module per job (each imports only those above it in this list):

    fields     the names it accepts (data sets, samplers, chapters) and the strict field types
    loader     the YAML loader of parameter files (duplicate keys, alias bombs refused)
    messages   pydantic's errors as one ConfigError sentence; the models' base class
    merge      deep_merge, set_dotted, parse_assignment
    run        a run's sections and RunConfig (KEY_NEUTRAL: fields that keep old cache keys)
    chapters   the chapters' sections
    profile    Profile, load_profile and where the profiles live

lib.config imports no torch, pytorch-metric-learning, timm or lib.data: what only they can check
(a run's named components, its backbone, augmentation and data options) is checked by
`lib.train.check_run`, which lib.train adds to every RunConfig's validation when it is imported.
"""
from __future__ import annotations

from lib.config.chapters import Chapters
from lib.config.fields import (
    CHAPTER_NAMES,
    DATASET_NAMES,
    DEVICES,
    NAME_PATTERN,
    SAMPLER_NAMES,
    TIMM_BACKBONES,
)
from lib.config.loader import yaml_load
from lib.config.merge import deep_merge, parse_assignment, set_dotted
from lib.config.profile import PARAMS_DIR, Profile, available_profiles, load_profile, profile_path
from lib.config.run import (
    KEY_NEUTRAL,
    ComponentConfig,
    DataConfig,
    DistanceConfig,
    DivideConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SamplerConfig,
    TrainConfig,
)
from lib.errors import ConfigError
from lib.paths import REPO_ROOT

__all__ = [
    "ConfigError", "REPO_ROOT", "PARAMS_DIR", "DATASET_NAMES", "SAMPLER_NAMES", "DEVICES", "CHAPTER_NAMES",
    "NAME_PATTERN", "DataConfig", "ModelConfig", "ComponentConfig", "LossConfig", "DistanceConfig",
    "SamplerConfig", "OptimConfig", "TrainConfig", "EvalConfig", "DivideConfig", "RunConfig", "Profile",
    "available_profiles", "deep_merge", "load_profile", "parse_assignment", "profile_path", "set_dotted",
    "yaml_load", "KEY_NEUTRAL", "TIMM_BACKBONES", "Chapters",
]
