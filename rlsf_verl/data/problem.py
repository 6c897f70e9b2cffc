"""One evaluation or training item: a question with its normalised gold answer.

>>> from rlsf_verl.data.problem import Problem
>>> p = Problem(id="q1", question="Which is a fruit?", answer="B", kind="choice", choices=("rock", "pear"))
>>> Problem.from_dict(p.to_dict()) == p
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

KINDS = ("math", "choice")
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Problem:
    """A question and its gold answer.

    ``answer`` is normalised: a number string ("72", "-3", "0.5") for ``kind="math"``, a choice
    letter ("B") for ``kind="choice"``. ``choices`` holds the choice texts in label order A, B, C...
    and is empty for math problems; ``question`` never contains the choices.
    """

    id: str
    question: str
    answer: str
    kind: str
    choices: tuple[str, ...] = ()
    source: str = "builtin"

    def __post_init__(self) -> None:
        for name in ("id", "question", "answer", "source"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Problem.{name} must be a non-empty string, got {value!r}")
        if self.kind not in KINDS:
            raise ValueError(f"Problem.kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.choices, list):
            # frozen dataclass: normalise a list (e.g. from JSON) to the documented tuple
            object.__setattr__(self, "choices", tuple(self.choices))
        if not isinstance(self.choices, tuple) or not all(isinstance(c, str) for c in self.choices):
            raise ValueError(f"Problem.choices must be a tuple of strings, got {self.choices!r}")
        if self.kind == "math" and self.choices:
            raise ValueError(f"Problem {self.id!r}: a math problem has no choices; use kind='choice'")
        if self.kind == "choice":
            if not 2 <= len(self.choices) <= len(LETTERS):
                raise ValueError(
                    f"Problem {self.id!r}: a choice problem needs 2 to {len(LETTERS)} choices, got {len(self.choices)}"
                )
            labels = LETTERS[: len(self.choices)]
            if self.answer not in labels:
                raise ValueError(
                    f"Problem {self.id!r}: answer must be one of the choice letters {', '.join(labels)}, "
                    f"got {self.answer!r}"
                )

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (``choices`` as a list)."""
        d = asdict(self)
        d["choices"] = list(self.choices)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Problem:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Problem.from_dict: unknown keys {unknown} (known: {sorted(known)})")
        missing = [name for name in ("id", "question", "answer", "kind") if name not in d]
        if missing:
            raise ValueError(f"Problem.from_dict: missing keys {missing}")
        return cls(**d)
