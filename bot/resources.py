"""Where the shipped prompts/ and migrations/ folders are, in a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """``prompts`` or ``migrations``: inside the wheel under bot/_resources, else the checkout."""
    for candidate in (_PACKAGE / "_resources" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"cannot find the {name}/ folder next to {_PACKAGE}: the installation is incomplete"
    )
