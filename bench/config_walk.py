"""Follow one run's config from its profile to the first training epoch and count the walk.

    PYTHONPATH=. METRIC_DATA=/work/shared/data .venv/bin/python bench/config_walk.py [--profile P] [--dataset D]

It loads the profile as `python -m lib.train` does (load_profile, Profile.run_config), then calls
lib.train.run under sys.setprofile and stops at the first call of Trainer.train_epoch: that is
where batch training starts (Trainer.fit only checks for a checkpoint before it), so everything
before it is the config's walk through the layers. The run cache and data cache are a fresh
temporary folder, so no cached result or array short-cuts the walk.

  stops   distinct lib functions entered, in first-entry order (the last is Trainer.train_epoch)
  modules distinct lib modules among them
  climbs  consecutive stops where the next one's layer is higher than the previous one's: a
          reader following the walk goes back up a layer

The script uses only APIs that exist at 1a860c7 and at HEAD, so it measures before and after.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# Bottom to top, copied from tests/test_lib_layout.py at HEAD (a name covers every module under it
# unless it is "lib"; the longest matching name wins). Older commits' modules match the same names:
# at 1a860c7 lib.config, lib.evaluate and lib.stats were single files, and lib.study, lib.chapters.* exist.
LAYERS = [
    ("base", ["lib", "lib.errors", "lib.paths", "lib.arms"]),
    ("config", ["lib.config"]),
    ("data and computations", ["lib.data", "lib.augment", "lib.evaluate", "lib.geometry", "lib.stats", "lib.mechanics",
                               "lib.diagnostics", "lib.miners", "lib.cache"]),
    ("models and components", ["lib.models", "lib.components", "lib.splits", "lib.batching", "lib.divide"]),
    ("trainer", ["lib.trainer"]),
    ("scoring", ["lib.scoring", "lib.results", "lib.reid"]),
    ("train and runs", ["lib.train", "lib.runs"]),
    ("analysis", ["lib.records", "lib.compare", "lib.confirmatory", "lib.claims", "lib.ledger", "lib.plots",
                  "lib.report"]),
    ("study", ["lib.study", "lib.derived"]),
    ("chapters", ["lib.chapters", "lib.takeaways", "lib.runs.__main__"]),
]
# Module names of older commits that HEAD's table does not reach by prefix, mapped to the layer their
# job now has (a module in neither table prints "?" and never counts as a climb).
OLD_NAMES = {"lib.chapters.collapse": "chapters", "lib.chapters.claims": "chapters"}
LAYER_INDEX = {name: i for i, (name, _) in enumerate(LAYERS)}

STOP = ("lib.trainer", "Trainer.train_epoch")
SKIP = {"<genexpr>", "<listcomp>", "<lambda>", "<dictcomp>", "<setcomp>", "<module>"}


class _Reached(BaseException):
    """Raised by the profiler at STOP; a BaseException so no `except Exception` in lib swallows it."""


def layer(module: str) -> int | None:
    best = None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or (name != "lib" and module.startswith(name + "."))) and \
                    (best is None or len(name) > len(best[1])):
                best = (index, name)
    if best is None and module in OLD_NAMES:
        return LAYER_INDEX[OLD_NAMES[module]]
    return None if best is None else best[0]


def walk(profile_name: str, dataset: str | None) -> tuple[list[tuple[str, str]], str]:
    import lib
    from lib import train
    from lib.config import load_profile

    root = Path(lib.__file__).resolve().parent.parent
    stops: dict[tuple[str, int, str], tuple[str, str]] = {}  # insertion order = first entry

    def module_of(filename: str) -> str | None:
        path = Path(filename)
        if not path.is_absolute() or path.suffix != ".py":  # "<string>": pydantic/dataclass code
            return None
        try:
            parts = list(path.resolve().relative_to(root).with_suffix("").parts)
        except ValueError:
            return None
        if parts[0] != "lib":
            return None
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def profiler(frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        if code.co_name in SKIP:
            return
        module = module_of(code.co_filename)
        if module is None:
            return
        name = getattr(code, "co_qualname", code.co_name)
        stops.setdefault((code.co_filename, code.co_firstlineno, name), (module, name))
        if (module, name) == STOP:
            raise _Reached

    sys.setprofile(profiler)
    try:
        # The CLI's steps (lib.train.main): the profile, its first data set unless one is named, run.
        profile = load_profile(profile_name)
        cfg = profile.run_config(dataset or next(iter(profile.datasets)))
        train.run(cfg, progress=False)
    except _Reached:
        pass
    else:
        raise SystemExit(f"never reached {'.'.join(STOP)}: the walk is not complete")
    finally:
        sys.setprofile(None)
    return list(stops.values()), str(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="params/smoke.yaml")
    parser.add_argument("--dataset", default="omniglot")
    parser.add_argument("--list", action=argparse.BooleanOptionalAction, default=True,
                        help="print every stop (default) or only the summary")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="config_walk_") as tmp:
        # Set before lib reads them: a fresh run cache and data cache, so nothing cached is hit.
        os.environ["METRIC_RUNS"] = os.path.join(tmp, "runs")
        os.environ["METRIC_CACHE"] = os.path.join(tmp, "cache")
        stops, root = walk(args.profile, args.dataset)
    layers = [layer(module) for module, _ in stops]
    if args.list:
        print(f"lib from {root}")
        for i, ((module, name), index) in enumerate(zip(stops, layers), 1):
            print(f"{i:3d}. {module}.{name}  [{'?' if index is None else LAYERS[index][0]}]")
    modules = {module for module, _ in stops}
    climbs = sum(1 for a, b in zip(layers, layers[1:]) if a is not None and b is not None and b > a)
    print(f"walk: {len(stops)} stops in {len(modules)} modules, {climbs} climbs back up the layers "
          f"(from {args.profile} to {'.'.join(STOP)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
