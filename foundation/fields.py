"""One-line descriptions kept on the fields of a settings dataclass.

A field declared ``name: int = described(5, "What it is (paper section).")`` is an ordinary
dataclass field with that default (same ``__init__``, ``asdict`` and hashes); its description
lives in the field's metadata, where :func:`field_descriptions` reads it back, e.g. for the help
text of a settings form.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

HELP = "help"


def described(default: T, help: str) -> T:
    """A dataclass field with ``default`` and the one-line description ``help``."""
    return dataclasses.field(default=default, metadata={HELP: help})


def field_descriptions(config: Any) -> dict[str, str]:
    """Field name -> description of every field of the dataclass (class or instance)
    ``config`` that has one, in declaration order."""
    return {f.name: f.metadata[HELP] for f in dataclasses.fields(config) if HELP in f.metadata}
