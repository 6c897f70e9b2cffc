"""Errors for unknown names that suggest the closest known ones.

>>> from rlsf_verl.errors import unknown_name_error
>>> str(unknown_name_error("reward", "self_certanty", ["self_certainty", "entropy"]))
"unknown reward 'self_certanty'; did you mean 'self_certainty'? (known: entropy, self_certainty)"
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> ValueError:
    """A ValueError for ``name`` not among ``known``, with "did you mean" when something is close."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "none registered"
    return ValueError(f"unknown {kind} {name!r}{hint} (known: {listing})")


def settings_values(section: str, settings_class: type, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """``values`` as a plain dict for the dataclass ``settings_class``, refusing any key it lacks
    with "did you mean" (``section`` names where the keys live in the config, e.g. ``rlsf.rlif``).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Example:
    ...     window: int = 10
    >>> settings_values("rlsf.example", Example, {"windw": 3})
    Traceback (most recent call last):
    ...
    ValueError: unknown rlsf.example key 'windw'; did you mean 'window'? (known: window)
    """
    import dataclasses

    known = {field.name for field in dataclasses.fields(settings_class)}
    for key in values or {}:
        if key not in known:
            raise unknown_name_error(f"{section} key", key, known)
    return dict(values or {})
