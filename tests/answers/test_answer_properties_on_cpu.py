r"""Property-based specification of answer extraction and of ``rlvr_math`` / ``rlvr_choice``.

Answers are generated in the forms models write (integers with separators, signs, decimals,
fractions, roots, powers, tuples, intervals, small matrices, ``\text{}`` units, percents, degrees,
multiples of pi, option letters) and rendered as a model states them: in prose, with and without
``$``, in ``\boxed{}``, after "The answer is" / "Final answer:" / ``####``, with trailing
punctuation. For each: the extracted span is the answer as written, the same answer (possibly
spelled differently in the gold) scores 1, and a different, non-equivalent answer scores 0.
"""

from dataclasses import dataclass
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from rlsf_verl.answers import extract_answer
from rlsf_verl.rewards import get_reward_function

rlvr_math = get_reward_function("rlvr_math")
rlvr_choice = get_reward_function("rlvr_choice")

# Deterministic (CI runs the same examples every time) and bounded, so the suite takes seconds.
FAST = settings(max_examples=100, deadline=None, derandomize=True)


@dataclass(frozen=True)
class Case:
    written: str  # the answer as the model writes it
    gold: str  # the reference, possibly another spelling of the same answer
    wrong: str  # a different answer, not equivalent to ``written``


small = st.integers(min_value=1, max_value=60)
signed = st.integers(min_value=-500, max_value=500)


@st.composite
def integers(draw):
    n = draw(st.integers(min_value=-(10**7), max_value=10**7))
    written = f"{n:,}" if draw(st.booleans()) else str(n)
    wrong = draw(st.sampled_from([str(n + draw(st.integers(1, 9))), str(-n) if n else "1", str(n)[:-1] or "7"]))
    if wrong.strip("-") == "" or Fraction(wrong) == n:
        wrong = str(n + 1)
    return Case(written, str(n), wrong)


@st.composite
def decimals(draw):
    hundredths = draw(st.integers(min_value=-99999, max_value=99999).filter(lambda h: h % 100))
    value = Fraction(hundredths, 100)
    written = f"{float(value):.2f}"
    return Case(written, str(value), f"{float(value + Fraction(1, 100)):.2f}")


@st.composite
def fractions(draw):
    value = Fraction(draw(signed.filter(bool)), draw(st.integers(min_value=2, max_value=40)))
    if value.denominator == 1:
        value += Fraction(1, 3)
    p, q = abs(value.numerator), value.denominator
    sign = "-" if value < 0 else ""
    written = f"{sign}\\{draw(st.sampled_from(['frac', 'dfrac']))}{{{p}}}{{{q}}}"
    gold = draw(st.sampled_from([f"{value}", f"{sign}\\frac{{{p}}}{{{q}}}"]))
    wrong = draw(
        st.sampled_from(
            [f"{sign}{p}", f"{sign}\\frac{{{p + 1}}}{{{q}}}", f"\\frac{{{p}}}{{{q}}}" if sign else f"-{value}"]
        )
    )
    return Case(written, gold, wrong)


SQUAREFREE = [2, 3, 5, 6, 7, 10, 11, 13, 14, 15]


@st.composite
def roots(draw):
    a, b = draw(st.integers(min_value=2, max_value=12)), draw(st.sampled_from(SQUAREFREE))
    gold = draw(st.sampled_from([f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"]))
    wrong = draw(
        st.sampled_from(
            [
                str(a),
                f"{a + 1}\\sqrt{{{b}}}",
                f"{a}\\sqrt{{{b + 1}}}" if b + 1 not in (4, 9, 16) else f"{a}\\sqrt{{{b + 2}}}",
            ]
        )
    )
    return Case(f"{a}\\sqrt{{{b}}}", gold, wrong)


@st.composite
def powers(draw):
    base, exponent = draw(st.integers(min_value=2, max_value=9)), draw(st.integers(min_value=2, max_value=9))
    wrong = draw(st.sampled_from([str(base), f"{base}^{{{exponent + 1}}}", str(base**exponent + 1)]))
    return Case(f"{base}^{{{exponent}}}", str(base**exponent), wrong)


@st.composite
def tuples(draw):
    a, b = draw(signed), draw(signed)
    wrong = draw(st.sampled_from([str(a), f"({a},{b + 1})", f"({b},{a})" if a != b else f"({a},{b - 1})"]))
    return Case(f"({a}, {b})", f"({a},{b})", wrong)


@st.composite
def intervals(draw):
    a = draw(signed)
    b = a + draw(small)
    left, right = draw(st.sampled_from("[(")), draw(st.sampled_from("])"))
    other_right = "]" if right == ")" else ")"
    wrong = draw(st.sampled_from([f"{left}{a},{b}{other_right}", f"{left}{a},{b + 1}{right}", str(a)]))
    return Case(f"{left}{a}, {b}{right}", f"{left}{a},{b}{right}", wrong)


@st.composite
def infinite_intervals(draw):
    a = draw(signed)
    return Case(
        f"(-\\infty, {a}]", f"(-\\infty,{a}]", draw(st.sampled_from([f"(-\\infty,{a})", f"(-\\infty,{a + 1}]"]))
    )


@st.composite
def matrices(draw):
    entries = draw(st.lists(signed, min_size=2, max_size=2))
    rows = " \\\\ ".join(str(e) for e in entries)
    changed = [entries[0], entries[1] + draw(small)]
    return Case(
        f"\\begin{{pmatrix}} {rows} \\end{{pmatrix}}",
        "\\begin{pmatrix}" + "\\\\".join(map(str, entries)) + "\\end{pmatrix}",
        "\\begin{pmatrix}" + "\\\\".join(map(str, changed)) + "\\end{pmatrix}",
    )


@st.composite
def with_units(draw):
    n, unit = draw(st.integers(min_value=1, max_value=5000)), draw(st.sampled_from(["cm", "inches", "dollars", "km"]))
    return Case(f"{n}\\text{{ {unit}}}", str(n), str(n + draw(small)))


@st.composite
def percents(draw):
    n = draw(st.integers(min_value=1, max_value=100))
    return Case(f"{n}\\%", draw(st.sampled_from([str(n), f"{n}\\%"])), f"{n + draw(small)}\\%")


@st.composite
def degrees(draw):
    n = draw(st.integers(min_value=1, max_value=359))
    return Case(f"{n}^\\circ", str(n), str(n + draw(small)))


@st.composite
def pi_multiples(draw):
    k, q = draw(st.integers(min_value=2, max_value=9)), draw(st.sampled_from([2, 3, 4, 6]))
    written = draw(st.sampled_from([f"{k}\\pi", f"\\frac{{{k}\\pi}}{{{q}}}"]))
    gold = written if draw(st.booleans()) else written.replace(f"{k}\\pi", f"\\pi {k}")
    return Case(written, gold, written.replace(f"{k}\\pi", f"{k + 1}\\pi"))


ANSWERS = st.one_of(
    integers(),
    decimals(),
    fractions(),
    roots(),
    powers(),
    tuples(),
    intervals(),
    infinite_intervals(),
    matrices(),
    with_units(),
    percents(),
    degrees(),
    pi_multiples(),
)

# How models state a final answer; "{a}" is the answer as written.
STATEMENTS = [
    "The answer is {a}.",
    "The answer is ${a}$.",
    "We add 3 and 17 first.\nSo the final answer is {a}\n",
    "Final answer: {a}",
    "Final Answer: The final answer is ${a}$. I hope it is correct.",
    "Therefore, the answer is {a}, which checks out.",
    "After 2 steps, the answer is **{a}**!",
    "Putting it together: $\\boxed{{{a}}}$.",
    "So we get \\boxed{{{a}}}",
    "First 12 + 30 = 42, then more work.\n#### {a}",
    "The answer is \\({a}\\).",
    "The answer is:\n\n{a}",
]


@FAST
@given(ANSWERS, st.sampled_from(STATEMENTS))
def test_the_extracted_span_is_the_answer_as_written(case, statement):
    text = statement.format(a=case.written)
    answer = extract_answer(text)
    assert answer is not None, text
    assert text[answer.start : answer.end] == case.written, text


@FAST
@given(ANSWERS, st.sampled_from(STATEMENTS))
def test_the_same_answer_scores_one_and_a_different_one_zero(case, statement):
    text = statement.format(a=case.written)
    assert rlvr_math(solution_str=text, ground_truth=case.gold)["score"] == 1.0, (text, case.gold)
    assert rlvr_math(solution_str=text, ground_truth=case.wrong)["score"] == 0.0, (text, case.wrong)


CHOICE_STATEMENTS = [
    "({l})",
    "{l})",
    "answer: {l}",
    "The answer is ({l}).",
    "I choose {l}",
    "the correct option is {l}.",
    "Let me think about each option.\n\n**{l}**",
    "So the best fit is option {l}.",
    "Hence $\\boxed{{{l}}}$.",
    "I'd go with {l} because it fits.",
]


@FAST
@given(st.sampled_from("ABCDE"), st.sampled_from("ABCDE"), st.sampled_from(CHOICE_STATEMENTS), st.booleans())
def test_a_choice_letter_in_its_usual_forms_scores_only_when_it_is_the_gold(letter, other, statement, lower):
    written = letter.lower() if lower and statement.startswith(("(", "The answer is (")) else letter
    text = statement.format(l=written)
    answer = extract_answer(text, kind="choice")
    assert answer is not None and text[answer.start : answer.end] == written, text
    assert rlvr_choice(solution_str=text, ground_truth=letter)["score"] == 1.0
    assert rlvr_choice(solution_str=text, ground_truth=other)["score"] == float(other == letter)
