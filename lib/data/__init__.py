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
  datasets     Split, Dataset, OneShotRun, class_disjoint_split
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

from lib.data.archives import download, extract
from lib.data.checksums import expected_sha256, source_sha256, verify_source
from lib.data.datasets import Dataset, OneShotRun, Split, class_disjoint_split
from lib.data.errors import CorruptDataError, DataError, DataNotFoundError, UnknownDatasetError, UnsafeArchiveError
from lib.data.locations import REPO_ROOT, cache_dir, data_root
from lib.data.omniglot import check_oneshot_runs, load_oneshot_runs
from lib.data.registry import DATASETS, data_fingerprint, load_dataset

__all__ = [
    "DATASETS", "REPO_ROOT", "CorruptDataError", "DataError", "DataNotFoundError", "Dataset", "OneShotRun",
    "Split", "UnknownDatasetError", "UnsafeArchiveError", "cache_dir", "check_oneshot_runs",
    "class_disjoint_split", "data_fingerprint", "data_root", "download", "expected_sha256", "extract",
    "load_dataset", "load_oneshot_runs", "source_sha256", "verify_source",
]
