import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlsf_verl.answers import answers_equal


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("1/2", "0.5"),
        (r"\frac{1}{2}", "0.5"),
        (r"\dfrac{3}{4}", "3/4"),
        (r"\frac12", "1/2"),
        ("1,000", "1000"),
        ("$5.00", "5"),
        ("7.0", "7"),
        ("33.3333333", "100/3"),
        ("-3", "\u22123"),
    ],
)
def test_equal_numbers_in_different_spellings_match(predicted, gold):
    assert answers_equal(predicted, gold)


@pytest.mark.parametrize(("predicted", "gold"), [("0.333", "1/3"), ("71", "72"), ("-5", "5"), ("2x", "2")])
def test_different_values_do_not_match(predicted, gold):
    assert not answers_equal(predicted, gold)


def test_tolerance_is_relative_to_the_gold_magnitude():
    assert answers_equal("33.33", "100/3", tol=1e-4)
    assert not answers_equal("33.33", "100/3")


def test_two_decimals_are_both_exact_as_written():
    assert not answers_equal("0.1234567", "0.1234568")
    assert not answers_equal("3.1416", "3.14159", tol=1e-4)
    assert answers_equal("3.50", "3.5")


def test_math_verify_alone_rounds_decimals_which_is_why_numbers_have_their_own_rule():
    from math_verify import parse, verify

    assert verify(parse("$0.1234568$"), parse("$0.1234567$"))  # math-verify 0.9.0: rounds to 6 places
    assert not answers_equal("0.1234567", "0.1234568")


def test_math_verify_alone_keeps_neighbouring_integers_apart_as_the_own_rule_does():
    from math_verify import parse, verify

    assert not verify(parse("$1000000$"), parse("$1000001$"))
    assert not answers_equal("1000001", "1000000")


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("10^{3}", "1000"),
        (r"6\sqrt{2}", r"\sqrt{72}"),
        (r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2"),
        (r"(-\infty, 3]", r"(-\infty,3]"),
        (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
        (r"\text{ Tuesday}", r"\text{Tuesday}"),
        ("x = 5", "5"),
    ],
)
def test_expressions_equal_by_math_verify_match(predicted, gold):
    assert answers_equal(predicted, gold)


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        (r"-\frac{1}{2}", "1"),
        (r"2\sqrt{3}", "2"),
        ("(3,4)", "3"),
        ("(1,2)", "(2,1)"),
        (r"(-\infty, 3)", r"(-\infty,3]"),
        (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix}1\\3\end{pmatrix}"),
        (r"\text{no}", r"\text{on}"),
        ("y = 3", "2"),
    ],
)
def test_different_expressions_do_not_match(predicted, gold):
    assert not answers_equal(predicted, gold)


def test_non_numeric_math_answers_compare_by_normalised_latex():
    assert answers_equal(r"\left(1, \dfrac{1}{2}\right)", r"(1,\frac{1}{2})")
    assert not answers_equal(r"\sqrt{2}", r"\sqrt{3}")


def test_numbers_too_long_for_int_parsing_compare_as_text():
    degenerate = "1" * 5000
    assert answers_equal(degenerate, degenerate)
    assert not answers_equal(degenerate + "1", degenerate)
    assert not answers_equal(rf"\frac{{{degenerate}}}{{3}}", "7")


def test_no_answer_never_matches():
    assert not answers_equal(None, "7")
    assert not answers_equal(None, "B", kind="choice")


@pytest.mark.parametrize("predicted", ["B", "b", "(B)", "B.", " (b) "])
def test_choice_letters_match_in_any_case_and_common_wrapping(predicted):
    assert answers_equal(predicted, "B", kind="choice")


def test_different_choice_letters_do_not_match():
    assert not answers_equal("C", "B", kind="choice")
    assert not answers_equal("bank", "B", kind="choice")


def test_choice_gold_must_be_a_letter():
    with pytest.raises(ValueError, match="gold='bank' is not a choice letter"):
        answers_equal("B", "bank", kind="choice")


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="kind='number'"):
        answers_equal("1", "1", kind="number")


def test_gold_must_be_a_string():
    with pytest.raises(TypeError, match="gold must be a str"):
        answers_equal("1", 1)


@given(st.fractions(max_denominator=50), st.sampled_from(["{p}/{q}", r"\frac{{{p}}}{{{q}}}"]))
def test_a_fraction_matches_its_decimal_value(value, template):
    if value < 0:
        written = "-" + template.format(p=-value.numerator, q=value.denominator)
    else:
        written = template.format(p=value.numerator, q=value.denominator)
    assert answers_equal(written, f"{float(value):.12f}")


def test_large_neighbouring_integers_are_different_answers():
    # A relative tolerance must not merge exact integers: that would reward off-by-one answers.
    assert not answers_equal("1000001", "1000000")
    assert not answers_equal("123456790", "123456789")
    assert answers_equal("1,000,000", "1000000")


def test_a_rounded_decimal_still_matches_within_tolerance():
    assert answers_equal("2000000.0000001", "2000000")
    assert answers_equal("0.3333333", "1/3")
