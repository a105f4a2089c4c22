"""The config's vocabulary: the names it accepts and the field types its models are built from.

Strict types throughout: "3" is not 3, 1.5 is not an integer, true is not 1 (a number field takes
an integer), and every number must be finite.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

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

# timm models the profiles name, taken without importing timm (2 s), so that a chapter rendered from
# the cache never imports it; tests/test_config_probes.py checks that timm has each of them.
TIMM_BACKBONES = ("test_resnet", "resnet18", "resnet50", "resnet50.tv_in1k", "efficientnet_lite0")


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


class _Invalid(ValueError):
    """A check across fields: `key` is relative to the model that raised it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key, self.message = key, message


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
