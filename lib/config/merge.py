"""Plain data helpers: merging layers of settings, setting a dotted key, reading `key=value`."""
from __future__ import annotations

import copy
from typing import Any

import yaml

from lib.config.loader import _yaml_problem, yaml_load
from lib.errors import ConfigError


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

