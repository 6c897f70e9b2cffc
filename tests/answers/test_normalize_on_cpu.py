from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlsf_verl.answers import find_numbers, normalize_expression, normalize_number


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("1,234", "1234"),
        ("1,234,567", "1234567"),
        ("$5.00", "5"),
        ("€12.50", "12.5"),
        ("£3", "3"),
        ("50%", "50"),
        ("3.0", "3"),
        ("0.50", "0.5"),
        ("-7", "-7"),
        ("\u22127", "-7"),
        ("-$5", "-5"),
        ("$-5", "-5"),
        ("+4", "4"),
        ("-0.0", "0"),
        ("007", "7"),
        (".5", "0.5"),
        ("1,234.50", "1234.5"),
        ("1/2", "1/2"),
        ("-3/4", "-3/4"),
        ("6/4", "3/2"),
        ("8/4", "2"),
        ("42.", "42"),
        ("  17 ", "17"),
        ("100", "100"),
    ],
)
def test_normalize_number_gives_the_canonical_spelling(written, canonical):
    assert normalize_number(written) == canonical


@pytest.mark.parametrize("text", ["about 5", "5 apples", "5kg", "x", "", "1/0", "1,23", "1e5", "5..", "3 4"])
def test_normalize_number_rejects_anything_but_one_number(text):
    assert normalize_number(text) is None


def test_normalize_number_rejects_non_strings():
    with pytest.raises(TypeError, match="expects a str"):
        normalize_number(5)


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from(["", "$", "€", "£"]))
def test_normalize_number_round_trips_integers_with_separators_and_currency(n, currency):
    sign = "-" if n < 0 else ""
    assert normalize_number(f"{sign}{currency}{abs(n):,}") == str(n)


@given(st.decimals(min_value=-(10**6), max_value=10**6, places=3, allow_nan=False, allow_infinity=False))
def test_normalize_number_reads_decimals_with_trailing_zeros_exactly(value):
    assert Decimal(normalize_number(f"{value:.4f}")) == value


def test_find_numbers_keeps_list_commas_apart_from_thousands_separators():
    text = "Steps 1, 2, 3 cost 1,200 in total"
    assert [value for value, _, _ in find_numbers(text)] == ["1", "2", "3", "1200"]


def test_find_numbers_does_not_read_a_sentence_period_as_a_decimal_point():
    assert list(find_numbers("The total is 42.")) == [("42", 13, 15)]


def test_find_numbers_takes_the_number_of_a_quantity_glued_to_its_unit():
    assert [value for value, _, _ in find_numbers("It weighs 5kg and the bus leaves at 12pm")] == ["5", "12"]


def test_find_numbers_reads_a_hyphen_between_numbers_as_subtraction_not_a_sign():
    assert [value for value, _, _ in find_numbers("10-3=7")] == ["10", "3", "7"]


def test_find_numbers_ignores_digits_inside_words_versions_and_dates():
    assert [value for value, _, _ in find_numbers("x2 and v1.2.3 on 12/25/2020")] == ["12"]


def test_find_numbers_spans_cover_currency_and_percent_signs():
    text = "Pay $1,200 now, then 15% later."
    assert [text[start:end] for _, start, end in find_numbers(text)] == ["$1,200", "15%"]


@given(st.text(alphabet="0123456789,.$-/% abx\n", max_size=40))
def test_find_numbers_spans_are_ordered_and_normalise_to_their_value(text):
    previous_end = 0
    for value, start, end in find_numbers(text):
        assert previous_end <= start < end
        assert normalize_number(text[start:end]) == value
        previous_end = end


@pytest.mark.parametrize(
    ("expr", "canonical"),
    [
        (r"\frac{1}{2}", r"\frac{1}{2}"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"$\tfrac{3}{4}$", r"\frac{3}{4}"),
        (r"\left( 3, \frac{1}{2} \right)", r"(3,\frac{1}{2})"),
        ("x + 1", "x+1"),
        (r"2\pi r", r"2\pi r"),
        (r"90^\circ", "90"),
        (r"10\text{ inches}", "10"),
        (r"\$1{,}000", "1000"),
        (r"\text{(B)}", "(B)"),
        (" 3.50 ", "3.5"),
        (r"5\,000", "5000"),
        ("  ", ""),
    ],
)
def test_normalize_expression_gives_the_canonical_spelling(expr, canonical):
    assert normalize_expression(expr) == canonical


def test_normalize_number_keeps_every_digit_of_a_long_number():
    assert normalize_number("12345678901234567890123456789012.50") == "12345678901234567890123456789012.5"


def test_normalize_expression_keeps_a_text_answer_wrapped_so_words_stay_words():
    # Unwrapped, "no" and "on" are both the product n*o to a symbolic checker.
    assert normalize_expression(r"\text{ Tuesday }") == r"\text{Tuesday}"
    assert normalize_expression(r"\text{(C)}") == "(C)"


def test_normalize_expression_keeps_matrix_row_breaks():
    assert normalize_expression(r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}") == r"\begin{pmatrix}1\\2\end{pmatrix}"


def test_normalize_expression_drops_a_unicode_degree_sign():
    assert normalize_expression("90°") == "90"
