"""The YAML loader of parameter files and overrides: safe, and stricter than yaml.SafeLoader."""
from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import Any

import yaml


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
    is raised as one too). A text read before is not parsed again (a copy of it is returned)."""
    try:
        return copy.deepcopy(_parsed(text))
    except RecursionError:
        raise yaml.YAMLError("values nested too deeply") from None


@lru_cache(maxsize=64)
def _parsed(text: str) -> Any:
    # The pure-Python loader (its alias and duplicate-key checks need it) parses params/ in about
    # 35 ms a file; building a plan loads the profiles dozens of times, about 1.5 s a process.
    return yaml.load(text, Loader=_Loader)
