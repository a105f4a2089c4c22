"""Data sets by name, as train/test splits with disjoint classes (the zero-shot protocol).

`load_dataset(name, root=..., image_size=..., **options)` is the one entry point; `DATASETS`
holds the names it accepts. Small sets (Omniglot, beluga) are decoded once into uint8 arrays
at the target size and cached under `cache_dir()` (the repository's runs/data_cache), because
the shared data folder is read-only and decoding is the slow part; each cached array carries
a checksum that is verified when it is read. Large photo sets (CUB, Cars, SOP, a user's folder
or CSV) keep file paths and decode in `Split.read`, which DataLoader workers can call.

Every missing file raises `DataNotFoundError` saying which data set, where it looked and how
to get it; every damaged file raises `CorruptDataError` saying which file and what to do. A
source file listed in a `SHA256SUMS` beside it is checked against it (once per file version).

The modules, one job each:
  errors       the exceptions
  locations    data_root(), cache_dir()
  options      checks of the loaders' options
  splits       Split, Dataset, OneShotRun, class_disjoint_split
  decode       image files -> uint8 arrays; Omniglot ink masks
  array_cache  the decoded-array cache and its checksums
  checksums    SHA256SUMS files and the store of source files' sha256
  archives     download, extract, archive checks
  image_files  helpers of the sets read from image files
  omniglot     Omniglot and Lake's one-shot runs
  beluga       the beluga photo-ID set
  benchmarks   CUB-200-2011, Stanford Cars 196, Stanford Online Products
  folders      a user's folder or CSV of images
  registry     load_dataset, DATASETS, data_fingerprint
"""
from __future__ import annotations

from lib.data.archives import _check_archive, download, extract
from lib.data.array_cache import _CACHE_VERSION, _cached
from lib.data.beluga import _BELUGA_COLUMNS, _BELUGA_ZIP, _SIDE_ROTATION, _VIEWPOINT_VALUE, _load_beluga
from lib.data.benchmarks import _CUB_URL, _load_cars196, _load_cub200, _load_sop, _read_table
from lib.data.checksums import _fingerprint, expected_sha256, source_sha256, verify_source
from lib.data.decode import _decode, _png_ink, _resize_ink
from lib.data.errors import (
    _SHARED_HINT,
    CorruptDataError,
    DataError,
    DataNotFoundError,
    UnknownDatasetError,
    UnsafeArchiveError,
    _not_found,
)
from lib.data.folders import _load_csv, _load_folder, _own_dataset
from lib.data.image_files import _IMAGE_SUFFIXES, _check_files, _file_dataset, _file_split, _find_dir
from lib.data.locations import REPO_ROOT, cache_dir, data_root
from lib.data.omniglot import (
    _OMNIGLOT_FIRST_ID,
    _OMNIGLOT_PNG,
    _OMNIGLOT_SHA256,
    _OMNIGLOT_SMALL,
    _OMNIGLOT_URL,
    _OMNIGLOT_URL_PATH,
    _REFETCH,
    _alphabet_key,
    _fetch_omniglot,
    _load_omniglot,
    _omniglot_files,
    _omniglot_from_npz,
    _omniglot_from_zips,
    _omniglot_meta,
    check_oneshot_runs,
    load_oneshot_runs,
)
from lib.data.options import _choice, _fraction, _size
from lib.data.registry import DATASETS, data_fingerprint, load_dataset
from lib.data.splits import Dataset, OneShotRun, Split, _as_index, _counts, class_disjoint_split

__all__ = [
    "DATASETS", "REPO_ROOT", "CorruptDataError", "DataError", "DataNotFoundError", "Dataset", "OneShotRun",
    "Split", "UnknownDatasetError", "UnsafeArchiveError", "cache_dir", "check_oneshot_runs",
    "class_disjoint_split", "data_fingerprint", "data_root", "download", "expected_sha256", "extract",
    "load_dataset", "load_oneshot_runs", "source_sha256", "verify_source",
]
