"""MultiArith-like two-step word problems, generated from a structured spec so answers are exact, and
easier one-step ones (:func:`one_step_problems`) that a small model can partly solve.

Each problem comes from an :class:`ArithmeticSpec`: three small integers, two operations and a
grouping. The text is a template filled with those numbers; the answer is the spec evaluated with
integer arithmetic, where every intermediate result is a positive integer (divisions are exact).

>>> from rlsf_verl.data.arithmetic import arithmetic_problems, arithmetic_specs
>>> spec = arithmetic_specs(1, seed=0)[0]
>>> str(spec.evaluate()) == arithmetic_problems(1, seed=0)[0].answer
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rlsf_verl.data.problem import Problem

OPS = ("+", "-", "*", "/")
GROUPINGS = ("left", "right")  # left: (a op1 b) op2 c    right: a op1 (b op2 c)


def _apply(op: str, x: int, y: int) -> int | None:
    """``x op y`` when it is a positive integer, else None (the sampler then draws again)."""
    if op == "+":
        result = x + y
    elif op == "-":
        result = x - y
    elif op == "*":
        result = x * y
    elif op == "/":
        if x % y:
            return None
        result = x // y
    else:
        raise ValueError(f"unknown operation {op!r}; expected one of {OPS}")
    return result if result > 0 else None


@dataclass(frozen=True)
class ArithmeticSpec:
    """The structure behind one generated word problem.

    ``numbers`` = (a, b, c) and ``ops`` = (op1, op2); ``grouping`` "left" means (a op1 b) op2 c,
    "right" means a op1 (b op2 c). ``question`` is the rendered text, which mentions a, b and c.
    """

    template: str
    numbers: tuple[int, int, int]
    ops: tuple[str, str]
    grouping: str
    question: str

    @property
    def expression(self) -> str:
        """The computation as text, e.g. ``"(12 - 4) / 2"``."""
        (a, b, c), (op1, op2) = self.numbers, self.ops
        return f"({a} {op1} {b}) {op2} {c}" if self.grouping == "left" else f"{a} {op1} ({b} {op2} {c})"

    def evaluate(self) -> int:
        """The exact answer; raises ValueError if a step is not a positive integer."""
        value = _evaluate(self.numbers, self.ops, self.grouping)
        if value is None:
            raise ValueError(f"{self.expression} has a step that is not a positive integer")
        return value

    def to_problem(self, index: int) -> Problem:
        return Problem(
            id=f"arith-{index:04d}",
            question=self.question,
            answer=str(self.evaluate()),
            kind="math",
            source="arithmetic",
        )


def _evaluate(numbers: tuple[int, int, int], ops: tuple[str, str], grouping: str) -> int | None:
    (a, b, c), (op1, op2) = numbers, ops
    if grouping == "left":
        first = _apply(op1, a, b)
        return None if first is None else _apply(op2, first, c)
    if grouping == "right":
        inner = _apply(op2, b, c)
        return None if inner is None else _apply(op1, a, inner)
    raise ValueError(f"unknown grouping {grouping!r}; expected one of {GROUPINGS}")


@dataclass(frozen=True)
class _Template:
    name: str
    text: str  # placeholders: {a} {b} {c} {name} {He} {he} {him}
    ops: tuple[str, str]
    grouping: str
    ranges: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # inclusive, for a, b, c


TEMPLATES: tuple[_Template, ...] = (
    _Template(
        "shopping",
        "{name} buys {a} packs of pencils with {b} pencils in each pack. {He} gives {c} pencils to "
        "classmates. How many pencils does {name} have left?",
        ("*", "-"),
        "left",
        ((2, 9), (3, 12), (2, 20)),
    ),
    _Template(
        "apples",
        "{name} picked {a} apples in the morning and {b} apples in the afternoon. {He} used {c} of "
        "them to bake pies. How many apples does {name} have now?",
        ("+", "-"),
        "left",
        ((5, 40), (5, 40), (2, 30)),
    ),
    _Template(
        "pages_left",
        "A book has {a} pages. {name} has already read {b} pages. If {he} reads {c} pages a day, how "
        "many more days will it take {him} to finish the book?",
        ("-", "/"),
        "left",
        ((40, 120), (5, 39), (2, 10)),
    ),
    _Template(
        "candy",
        "{name} had {a} candies and bought {b} more. {He} shares all of them equally among {c} "
        "friends. How many candies does each friend get?",
        ("+", "/"),
        "left",
        ((5, 40), (2, 30), (2, 8)),
    ),
    _Template(
        "cookies",
        "A baker makes {a} trays of cookies with {b} cookies on each tray. The cookies are packed "
        "into bags of {c}. How many bags does the baker fill?",
        ("*", "/"),
        "left",
        ((2, 9), (4, 12), (2, 8)),
    ),
    _Template(
        "savings",
        "{name} saves {a} dollars every week for {b} weeks. Then {he} gets {c} dollars as a birthday "
        "gift. How many dollars does {name} have in total?",
        ("*", "+"),
        "left",
        ((2, 15), (2, 10), (5, 50)),
    ),
    _Template(
        "bus",
        "A bus has {a} passengers. At the first stop {b} passengers get off and {c} passengers get "
        "on. How many passengers are on the bus now?",
        ("-", "+"),
        "left",
        ((10, 50), (2, 30), (2, 20)),
    ),
    _Template(
        "video_game",
        "In a video game, {name} scores {c} points for each treasure {he} finds. A level has {a} "
        "treasures, but {he} misses {b} of them. How many points does {name} score in the level?",
        ("-", "*"),
        "left",
        ((5, 15), (1, 8), (2, 10)),
    ),
    _Template(
        "garden",
        "{name} plants {a} rows of tomato plants with {b} plants in each row. Rabbits eat {c} of the "
        "plants. How many tomato plants are left?",
        ("*", "-"),
        "left",
        ((2, 9), (3, 10), (2, 15)),
    ),
    _Template(
        "toy_cars",
        "{name} has {a} dollars. {He} buys {b} toy cars that cost {c} dollars each. How many dollars "
        "does {name} have left?",
        ("-", "*"),
        "right",
        ((20, 100), (2, 6), (2, 12)),
    ),
    _Template(
        "daily_reading",
        "{name} reads {b} pages every day for {c} days. The book has {a} pages. How many pages does "
        "{he} still have to read?",
        ("-", "*"),
        "right",
        ((40, 120), (3, 12), (2, 7)),
    ),
    _Template(
        "pizza",
        "There are {a} pizzas, each cut into {b} slices. {c} children share the slices equally. How "
        "many slices does each child get?",
        ("*", "/"),
        "left",
        ((2, 6), (4, 12), (2, 8)),
    ),
    _Template(
        "marbles",
        "{name} had {a} marbles. {He} won {b} more marbles in a game and then lost {c} of them. How "
        "many marbles does {name} have now?",
        ("+", "-"),
        "left",
        ((5, 40), (2, 20), (1, 30)),
    ),
    _Template(
        "desks",
        "A school has {a} classrooms with {b} desks in each classroom. Then {c} new desks arrive. How "
        "many desks does the school have now?",
        ("*", "+"),
        "left",
        ((2, 8), (5, 20), (2, 20)),
    ),
    _Template(
        "stickers",
        "{name} has {a} stickers. {He} keeps {b} of them and shares the rest equally among {c} "
        "friends. How many stickers does each friend get?",
        ("-", "/"),
        "left",
        ((12, 60), (2, 10), (2, 6)),
    ),
    _Template(
        "eggs",
        "A farmer collects {a} eggs on Monday and {b} eggs on Tuesday. The farmer packs them into "
        "cartons of {c} eggs. How many cartons does the farmer fill?",
        ("+", "/"),
        "left",
        ((6, 40), (6, 40), (2, 12)),
    ),
)

# (name, subject pronoun, object pronoun)
_PEOPLE = (
    ("Maria", "she", "her"),
    ("Tom", "he", "him"),
    ("Aisha", "she", "her"),
    ("Ken", "he", "him"),
    ("Lena", "she", "her"),
    ("Omar", "he", "him"),
    ("Sofia", "she", "her"),
    ("Ben", "he", "him"),
)
_MAX_DRAWS = 10_000


def _sample(template: _Template, rng: random.Random) -> ArithmeticSpec:
    for _ in range(_MAX_DRAWS):
        numbers = tuple(rng.randint(lo, hi) for lo, hi in template.ranges)
        if _evaluate(numbers, template.ops, template.grouping) is not None:
            break
    else:  # only reachable if a template's ranges cannot produce positive integer steps
        raise RuntimeError(f"template {template.name!r}: no valid numbers in {_MAX_DRAWS} draws")
    name, he, him = rng.choice(_PEOPLE)
    a, b, c = numbers
    text = template.text.format(a=a, b=b, c=c, name=name, He=he.capitalize(), he=he, him=him)
    return ArithmeticSpec(template.name, numbers, template.ops, template.grouping, text)


def arithmetic_specs(n: int, seed: int = 0) -> list[ArithmeticSpec]:
    """``n`` problem specs, deterministic for ``seed``.

    Templates are dealt in shuffled rounds, so any ``n >= len(TEMPLATES)`` uses every template.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = random.Random(seed)
    specs: list[ArithmeticSpec] = []
    while len(specs) < n:
        round_ = list(TEMPLATES)
        rng.shuffle(round_)
        specs.extend(_sample(t, rng) for t in round_[: n - len(specs)])
    return specs


def arithmetic_problems(n: int, seed: int = 0) -> list[Problem]:
    """``n`` MultiArith-like problems (ids ``arith-0000``...), deterministic for ``seed``."""
    return [spec.to_problem(i) for i, spec in enumerate(arithmetic_specs(n, seed))]


# One operation on two small numbers: (name, text with {a} {b} {name} {He} {he}, operation, ranges of a and b).
ONE_STEP_TEMPLATES: tuple[tuple[str, str, str, tuple[tuple[int, int], tuple[int, int]]], ...] = (
    (
        "picked",
        "{name} has {a} apples. {He} picks {b} more apples. How many apples does {name} have now?",
        "+",
        ((2, 20), (2, 20)),
    ),
    (
        "bus_on",
        "A bus has {a} passengers. At a stop {b} more passengers get on. How many passengers are on the bus now?",
        "+",
        ((5, 30), (2, 15)),
    ),
    (
        "gave_away",
        "{name} has {a} stickers. {He} gives {b} stickers to a friend. How many stickers does {name} have left?",
        "-",
        ((10, 40), (1, 9)),
    ),
    (
        "spent",
        "{name} had {a} dollars and spent {b} dollars on a book. How many dollars does {name} have left?",
        "-",
        ((10, 50), (2, 9)),
    ),
    (
        "boxes",
        "There are {a} boxes with {b} pencils in each box. How many pencils are there in all?",
        "*",
        ((2, 9), (2, 9)),
    ),
    (
        "weeks",
        "{name} reads {a} pages every day for {b} days. How many pages does {he} read in all?",
        "*",
        ((2, 10), (2, 7)),
    ),
    (
        "share",
        "{name} shares {a} cookies equally among {b} friends. How many cookies does each friend get?",
        "/",
        ((4, 40), (2, 5)),
    ),
    ("teams", "{a} children split into teams of {b}. How many teams are there?", "/", ((6, 40), (2, 6))),
)


def one_step_problems(n: int, seed: int = 0) -> list[Problem]:
    """``n`` one-operation word problems (ids ``step-0000``..., source ``one_step``), deterministic for ``seed``.

    Templates are dealt in shuffled rounds like :func:`arithmetic_specs`; every answer is a positive integer.

    >>> p = one_step_problems(1, seed=0)[0]
    >>> p.kind, p.source, int(p.answer) > 0
    ('math', 'one_step', True)
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = random.Random(seed)
    problems: list[Problem] = []
    while len(problems) < n:
        round_ = list(ONE_STEP_TEMPLATES)
        rng.shuffle(round_)
        for _, text, op, ranges in round_[: n - len(problems)]:
            for _ in range(_MAX_DRAWS):
                a, b = (rng.randint(lo, hi) for lo, hi in ranges)
                answer = _apply(op, a, b)
                if answer is not None:
                    break
            name, he, _him = rng.choice(_PEOPLE)
            question = text.format(a=a, b=b, name=name, He=he.capitalize(), he=he)
            problems.append(
                Problem(
                    id=f"step-{len(problems):04d}",
                    question=question,
                    answer=str(answer),
                    kind="math",
                    source="one_step",
                )
            )
    return problems
