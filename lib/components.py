"""pytorch-metric-learning losses, miners and distances, and torch optimisers, by name.

Names and keyword arguments are checked against the classes themselves, so a
typo in a params file fails with the list of valid choices.
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import torch
from pytorch_metric_learning import distances, losses, miners

from lib.errors import ConfigError
from lib.miners import STUDY_MINERS

if TYPE_CHECKING:  # for type checkers only: lib.train.check_run uses this module to check a RunConfig
    from lib.config import RunConfig

def _classes(module, base) -> dict[str, type]:
    return {n: c for n, c in vars(module).items()
            if isinstance(c, type) and issubclass(c, base) and c is not base and not n.startswith("Base")}


LOSSES = _classes(losses, losses.BaseMetricLossFunction)
MINERS = {**_classes(miners, miners.BaseMiner), **STUDY_MINERS}
DISTANCES = _classes(distances, distances.BaseDistance)
OPTIMIZERS = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW, "SGD": torch.optim.SGD}
SCHEDULERS = ("step", "cosine", "plateau")
SAMPLERS = ("m_per_class", "shuffle")


def _parameters(cls: type, skip: tuple[str, ...] = ()) -> dict[str, object]:
    """{argument: default} of `cls(...)`; pml classes forward **kwargs to their bases, so the whole
    chain's parameters count (a subclass's default first)."""
    out: dict[str, object] = {}
    for base in cls.__mro__:
        if "__init__" in vars(base):
            for name, p in inspect.signature(base.__init__).parameters.items():
                if name not in ("self", "args", "kwargs", *skip) and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    out.setdefault(name, p.default)
    return out


def _shown(value) -> str:
    """A default as YAML writes it."""
    return "true" if value is True else "false" if value is False else "null" if value is None else repr(value)


def _check_arguments(key: str, what: str, owner: str, parameters: dict[str, object], kwargs: dict) -> None:
    """Names against the class's arguments; values against the type of their defaults (a number
    where the default is one, true or false where it is a bool). ConfigError naming the key."""
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        raise ConfigError(f"{key}: {what} has no argument {', '.join(unknown)}; "
                          f"valid: {', '.join(sorted(parameters)) or 'none'}")
    for name, value in kwargs.items():
        default = parameters[name]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{key}.{name}: expected true or false ({owner}'s default is {_shown(default)}), "
                                  f"got {value!r} ({type(value).__name__})")
        elif isinstance(default, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{key}.{name}: expected a number ({owner}'s default is {default!r}), "
                                  f"got {value!r} ({type(value).__name__})")


def _refused(key: str, owner: str, kwargs: dict, exc: Exception) -> ConfigError:
    settings = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "its defaults"
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return ConfigError(f"{key}: {owner} refuses {settings}: {reason}")


def _instantiate(kind: str, registry: dict[str, type], name: str, kwargs: dict, **extra):
    if name not in registry:
        raise ConfigError(f"{kind}.name: unknown {kind} '{name}'; valid choices: {', '.join(sorted(registry))}")
    cls = registry[name]
    accepted = _parameters(cls)
    _check_arguments(f"{kind}.kwargs", f"{kind} {name}", name, accepted, kwargs)
    try:
        return cls(**kwargs, **{k: v for k, v in extra.items() if k in accepted and k not in kwargs})
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise _refused(f"{kind}.kwargs", name, kwargs, exc) from None


def build_distance(cfg: RunConfig):
    return _instantiate("distance", DISTANCES, cfg.distance.name, cfg.distance.kwargs)


def build_loss(cfg: RunConfig, distance, num_classes: int = 2, embedding_size: int = 2):
    """The loss. The classification losses (NormalizedSoftmaxLoss, ArcFaceLoss, ProxyAnchorLoss,
    ...), which require them, also get the number of training classes and the size of the
    embedding the loss sees; MarginLoss's optional `num_classes` (a beta per class) is left to
    the params."""
    loss_class = LOSSES.get(cfg.loss.name)
    required = _required_arguments(loss_class) if loss_class else set()
    sizes = {k: v for k, v in {"num_classes": num_classes, "embedding_size": embedding_size}.items() if k in required}
    return _instantiate("loss", LOSSES, cfg.loss.name, cfg.loss.kwargs, distance=distance, **sizes)


def _required_arguments(cls: type) -> set[str]:
    return {name for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - {"self"}


def build_miner(cfg: RunConfig, distance):
    if cfg.miner.name in (None, "none"):
        return None
    return _instantiate("miner", MINERS, cfg.miner.name, cfg.miner.kwargs, distance=distance)


def build_optimizer(cfg: RunConfig, model: torch.nn.Module, loss_fn: torch.nn.Module):
    o = cfg.optim
    if o.name not in OPTIMIZERS:
        raise ConfigError(f"optim.name: unknown optimizer '{o.name}'; valid choices: {', '.join(OPTIMIZERS)}")
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    loss_params = [p for p in loss_fn.parameters() if p.requires_grad]
    if loss_params:  # MarginLoss's learnable beta trains at its own rate (Wu et al.)
        groups.append({"params": loss_params, "lr": cfg.loss.lr or o.lr, "weight_decay": 0.0})
    # torch's default on CPU is a per-tensor loop; the fused kernel is 4x faster there (Adam on
    # test_resnet: 3.9 -> 0.9 ms a step) and on CUDA, with the same update up to rounding.
    kwargs = {"fused": True, **o.kwargs} if "foreach" not in o.kwargs else dict(o.kwargs)
    return OPTIMIZERS[o.name](groups, lr=o.lr, weight_decay=o.weight_decay, **kwargs)


def build_scheduler(cfg: RunConfig, optimizer):
    name, kw = cfg.optim.scheduler, dict(cfg.optim.scheduler_kwargs)
    if name is None:
        return None
    if name == "step":
        kw.setdefault("step_size", max(1, cfg.train.epochs // 3))
        return torch.optim.lr_scheduler.StepLR(optimizer, **kw)
    if name == "cosine":
        kw.setdefault("T_max", cfg.train.epochs)
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, **kw)
    if name == "plateau":  # on the training loss, as the blog's code did
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **kw)
    raise ConfigError(f"optim.scheduler: unknown scheduler '{name}'; valid choices: none, {', '.join(SCHEDULERS)}")


_SCHEDULER_CLASSES = {"step": torch.optim.lr_scheduler.StepLR, "cosine": torch.optim.lr_scheduler.CosineAnnealingLR,
                      "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau}


def validate(cfg: RunConfig) -> None:
    """Build every named component once (cheaply), with its keyword arguments, on a dummy
    parameter, so that a bad name, argument or value fails with one ConfigError naming the
    dotted key when the run's config is built, not when it trains."""
    distance = build_distance(cfg)
    build_loss(cfg, distance)
    build_miner(cfg, distance)
    o = cfg.optim
    if o.name not in OPTIMIZERS:
        raise ConfigError(f"optim.name: unknown optimizer '{o.name}'; valid choices: {', '.join(OPTIMIZERS)}")
    if o.scheduler not in (None, *SCHEDULERS):
        raise ConfigError(f"optim.scheduler: unknown scheduler '{o.scheduler}'; valid choices: none, "
                          f"{', '.join(SCHEDULERS)}")
    _check_arguments("optim.kwargs", o.name, o.name, _parameters(OPTIMIZERS[o.name], ("params", "lr", "weight_decay")),
                     o.kwargs)
    dummy = torch.nn.Linear(1, 1)
    try:
        optimizer = build_optimizer(cfg, dummy, torch.nn.Module())
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise _refused("optim.kwargs", o.name, o.kwargs, exc) from None
    if o.scheduler is not None:
        _check_arguments("optim.scheduler_kwargs", f"the {o.scheduler} scheduler", f"the {o.scheduler} scheduler",
                         _parameters(_SCHEDULER_CLASSES[o.scheduler], ("optimizer",)), o.scheduler_kwargs)
        try:
            build_scheduler(cfg, optimizer)
        except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
            raise _refused("optim.scheduler_kwargs", f"the {o.scheduler} scheduler", o.scheduler_kwargs, exc) from None
