"""A profile: params/<name>.yaml read (following `extends:`), validated, and the runs it describes."""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import Field, StrictBool, StrictStr, model_validator

from lib.config.chapters import Chapters, _subset
from lib.config.fields import NAME_MAX, NAME_PATTERN, DatasetName, List, PosInt, ProfileName, Seed, _Invalid
from lib.config.loader import _yaml_problem, yaml_load
from lib.config.merge import deep_merge, set_dotted
from lib.config.messages import _Model
from lib.config.run import RunConfig, RunLayer
from lib.errors import ConfigError
from lib.paths import REPO_ROOT

PARAMS_DIR = REPO_ROOT / "params"


class Profile(_Model):
    name: ProfileName
    description: StrictStr = ""
    budget_minutes: Union[PosInt, None] = None  # what run_all.sh may take from an empty cache on 2 CPU cores
    figure_formats: List[Literal["png", "svg", "pdf"]] = Field(default_factory=lambda: ["png", "svg"], min_length=1)
    seeds: List[Seed] = Field(default_factory=lambda: [0], min_length=1)
    # Keep finished runs in the results store results/<name>/ (lib.runs.store), which chapters read
    # when the run cache lacks a run: the committed numbers' profile does; the others use the run
    # cache alone, so nothing stale of theirs outlives it.
    results_store: StrictBool = False
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
            raise self._no_section(name)
        return copy.deepcopy(sections[name])

    def section(self, name: str) -> Any:
        """chapters.<name> as its typed model (lib.config.chapters; frozen): settings by attribute,
        an absent optional one at its default. `published` is plain data, {data set: {metric: value}}."""
        fields = {f.alias or n: n for n, f in Chapters.model_fields.items()}
        if name not in fields or fields[name] not in self.chapters.model_fields_set:
            raise self._no_section(name)
        return getattr(self.chapters, fields[name])

    def _no_section(self, name: str) -> ConfigError:
        sections = self.chapters.as_dict()
        return ConfigError(f"profile '{self.name}' has no section chapters.{name}; "
                           f"it has: {', '.join(sorted(sections)) or 'none'}")



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
