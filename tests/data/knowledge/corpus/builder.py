"""Building detectors from config dictionaries."""

from typing import Any

REGISTRY: dict[str, type] = {}


def register(name: str):
    """Class decorator that makes a detector available to build_detector by name."""

    def wrap(cls: type) -> type:
        REGISTRY[name] = cls
        return cls

    return wrap


def build_detector(cfg: dict[str, Any]) -> Any:
    """Instantiate the detector named by cfg["type"], passing the other keys as arguments."""
    kwargs = dict(cfg)
    kind = kwargs.pop("type")
    if kind not in REGISTRY:
        raise KeyError(f"unknown detector type {kind!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[kind](**kwargs)
