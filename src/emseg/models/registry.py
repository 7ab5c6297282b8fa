"""Networks registered by name, built from a plain config dict (empanada style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from emseg.errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class/factory decorator: ``@register("unet3d")``."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def available() -> list[str]:
    """Names of the registered architectures."""
    return sorted(_REGISTRY)


def build(name: str, **config: Any) -> nn.Module:
    """Instantiate architecture ``name`` with ``config`` (clear error on unknown names/keys)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model architecture {name!r}; available: {', '.join(available())}")
    try:
        return _REGISTRY[name](**config)
    except TypeError as exc:
        raise ConfigError(f"bad config for model {name!r}: {exc}") from None
