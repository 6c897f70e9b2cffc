"""Errors for unknown names that suggest the closest known ones.

>>> from rlsf_verl.naming import unknown_name_error
>>> str(unknown_name_error("reward", "self_certanty", ["self_certainty", "entropy"]))
"unknown reward 'self_certanty'; did you mean 'self_certainty'? (known: entropy, self_certainty)"
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> ValueError:
    """A ValueError for ``name`` not among ``known``, with "did you mean" when something is close."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "none registered"
    return ValueError(f"unknown {kind} {name!r}{hint} (known: {listing})")
