import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rlsf_verl
from rlsf_verl.answers import Answer, extract_answer, parse_gsm8k_gold

GSM8K_SOLUTION = """Natalia sold 48/2 = <<48/2=24>>24 clips in May.
Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.
#### 72"""

BOXED_SOLUTION = r"""We need $\frac{3}{6}$ of the pie, which simplifies.
Since $3 \div 6 = 0.5$, the fraction in lowest terms is
$$\boxed{\frac{1}{2}}$$"""

SMOLLM_CHATTY = """Sure! Let's break this down step by step.

1. Tom starts with 12 marbles.
2. He buys 3 bags of 8 marbles each, so he gets 3 x 8 = 24 marbles.
3. In total he has 12 + 24 = 36 marbles.

So, Tom has 36 marbles in total. I hope this helps!"""

ANSWER_IS_SOLUTION = """There are 5 boxes with 6 pencils each: 5 * 6 = 30.
She gives away 12, so 30 - 12 = 18 remain.
The answer is 18."""


def span(text: str, answer: Answer) -> str:
    return text[answer.start : answer.end]


# --- math: the rules and their priority ---------------------------------------------------------


def test_gsm8k_marker_gives_the_final_answer_among_intermediate_numbers():
    answer = extract_answer(GSM8K_SOLUTION)
    assert (answer.value, answer.source, span(GSM8K_SOLUTION, answer)) == ("72", "gsm8k", "72")


def test_gsm8k_marker_span_covers_currency_and_separators_as_written():
    text = "He pays 4 * 300 = 1200 dollars.\n#### $1,200"
    answer = extract_answer(text)
    assert (answer.value, span(text, answer)) == ("1200", "$1,200")


def test_gsm8k_marker_beats_a_boxed_answer():
    assert extract_answer("\\boxed{5}\n#### 6").source == "gsm8k"


def test_gsm8k_marker_without_a_number_falls_through_to_later_rules():
    answer = extract_answer("The answer is 9.\n#### unknown")
    assert (answer.value, answer.source) == ("9", "answer_is")


def test_boxed_answer_keeps_the_latex_and_spans_the_inner_content():
    answer = extract_answer(BOXED_SOLUTION)
    assert (answer.value, answer.source) == (r"\frac{1}{2}", "boxed")
    assert span(BOXED_SOLUTION, answer) == r"\frac{1}{2}"


def test_boxed_plain_number_is_normalised_as_a_number():
    text = r"The total cost is \boxed{ \$1{,}250.00 }."
    answer = extract_answer(text)
    assert (answer.value, span(text, answer)) == ("1250", r"\$1{,}250.00")


def test_last_boxed_answer_wins():
    assert extract_answer(r"First guess \boxed{3}, corrected: \boxed{4}").value == "4"


def test_boxed_content_with_nested_and_escaped_braces_is_read_whole():
    text = r"The set is \boxed{\{\frac{1}{2}, \sqrt{2}\}}"
    answer = extract_answer(text)
    assert span(text, answer) == r"\{\frac{1}{2}, \sqrt{2}\}"
    assert answer.value == r"\{\frac{1}{2},\sqrt{2}\}"


def test_an_unclosed_boxed_cut_off_by_the_length_limit_is_skipped():
    assert extract_answer(r"So \boxed{7} and then \boxed{\frac{1}{").value == "7"


def test_a_degenerate_run_of_unclosed_boxes_still_finds_the_closed_one():
    text = r"\boxed{" * 3000 + r"\boxed{7}"
    answer = extract_answer(text)
    assert (answer.value, answer.start) == ("7", len(text) - 2)


def test_boxed_beats_the_answer_is_cue():
    assert extract_answer(r"The answer is 3. Wait: \boxed{4}").source == "boxed"


def test_answer_is_cue_takes_the_number_after_it_not_the_last_number():
    text = ANSWER_IS_SOLUTION + " That leaves 2 boxes empty."
    answer = extract_answer(text)
    assert (answer.value, answer.source, span(text, answer)) == ("18", "answer_is", "18")


def test_answer_is_cue_ignores_a_sentence_ending_period():
    answer = extract_answer(ANSWER_IS_SOLUTION)
    assert (answer.value, span(ANSWER_IS_SOLUTION, answer)) == ("18", "18")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Final answer: 42", "42"),
        ("ANSWER: -3.5", "-3.5"),
        ("So the final answer is $1,000.", "1000"),
        ("Therefore, the answer would be 7 apples.", "7"),
        ("**Answer:** 15", "15"),
        ("The final answer is:\n\n**18**", "18"),
    ],
)
def test_answer_is_cue_has_several_spellings(text, value):
    answer = extract_answer(text)
    assert (answer.value, answer.source) == (value, "answer_is")


def test_answer_is_cue_reads_an_inline_formula():
    text = r"Final Answer: The final answer is $\dfrac{3}{4}$. I hope it is correct."
    answer = extract_answer(text)
    assert (answer.value, span(text, answer)) == (r"\frac{3}{4}", r"\dfrac{3}{4}")


def test_answer_is_cue_with_a_calculation_takes_its_result():
    text = "So the answer is 12 + 24 = 36. Earlier we had 5 = 5."
    answer = extract_answer(text)
    assert (answer.value, answer.start) == ("36", text.index("36"))


def test_answer_is_cue_reaches_the_next_line_only_when_it_holds_just_the_answer():
    text = "To find the answer:\n\n1. Tom starts with 12 marbles.\n2. He buys 24 more, so he has 36."
    answer = extract_answer(text)
    assert (answer.value, answer.source) == ("36", "last_number")


def test_last_answer_is_cue_with_a_number_wins():
    text = "A first answer is 5.\nRechecking, the answer is 6.\nThe answer is clear."
    assert extract_answer(text).value == "6"


def test_chatty_output_without_a_cue_falls_back_to_the_last_number():
    answer = extract_answer(SMOLLM_CHATTY)
    assert (answer.value, answer.source, span(SMOLLM_CHATTY, answer)) == ("36", "last_number", "36")


def test_last_number_keeps_list_items_apart():
    assert extract_answer("The primes below 6 are 2, 3, 5").value == "5"


def test_text_without_any_number_has_no_answer():
    assert extract_answer("I am not sure how to solve this problem.") is None


def test_empty_text_has_no_answer():
    assert extract_answer("") is None


def test_unknown_kind_is_rejected_with_the_accepted_ones():
    with pytest.raises(ValueError, match="kind='mcq'.*math.*choice"):
        extract_answer("42", kind="mcq")


def test_non_string_text_is_rejected():
    with pytest.raises(TypeError, match="text must be a str"):
        extract_answer(None)


@given(
    st.text(alphabet="abc 0123456789.,+=\n", max_size=60),
    st.integers(min_value=-(10**9), max_value=10**9),
    st.sampled_from(["", "$"]),
)
def test_gsm8k_span_always_covers_the_answer_as_written(prefix, n, currency):
    written = f"{'-' if n < 0 else ''}{currency}{abs(n):,}"
    text = f"{prefix}\n#### {written}"
    answer = extract_answer(text)
    assert (answer.value, span(text, answer)) == (str(n), written)


# --- multiple choice ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "letter", "source"),
    [
        ("The answer is (B).", "B", "answer_is"),
        ("Answer: (c)", "C", "answer_is"),
        ("The correct answer is D because people keep money there.", "D", "answer_is"),
        ("The answer is A.", "A", "answer_is"),
        ("**Answer:** **E**", "E", "answer_is"),
        ("The best option is C", "C", "answer_is"),
        ("So the answer is option B.", "B", "answer_is"),
        (r"Hence $\boxed{B}$.", "B", "boxed"),
        (r"\boxed{\text{(d) river}}", "D", "boxed"),
        ("After thinking about it:\n\n(B)\n", "B", "choice"),
        ("I would pick B) library.", "B", "answer_is"),
        ("Only one fits. So D.", "D", "choice"),
        ("Option A is wrong, and option C fits best.", "C", "choice"),
    ],
)
def test_choice_letter_is_found_in_its_common_written_forms(text, letter, source):
    answer = extract_answer(text, kind="choice")
    assert (answer.value, answer.source) == (letter, source)
    assert span(text, answer).upper() == letter


def test_choice_article_a_in_prose_is_not_an_option():
    text = "A person who wants to borrow a book would go to a place with many books."
    assert extract_answer(text, kind="choice") is None


def test_choice_article_after_the_cue_is_not_an_option():
    assert extract_answer("The answer is a bank.", kind="choice") is None
    assert extract_answer("Answer: A person would go to the bank.", kind="choice") is None


def test_choice_article_in_prose_does_not_hide_the_explicit_answer():
    text = "A person would go to the library to borrow books.\nThe answer is (B)."
    answer = extract_answer(text, kind="choice")
    assert (answer.value, span(text, answer)) == ("B", "B")


def test_choice_cue_does_not_reach_into_the_next_line():
    text = "Let's work out the answer:\nB is tempting, but (C) is right."
    assert extract_answer(text, kind="choice").value == "C"


def test_choice_last_explicit_answer_wins():
    text = "At first the answer is (A), but rereading the question, the answer is (C)."
    assert extract_answer(text, kind="choice").value == "C"


def test_choice_cue_beats_a_later_parenthesised_letter():
    text = "The answer is B. (A) is wrong because banks do not lend books."
    assert extract_answer(text, kind="choice").value == "B"


def test_choice_lone_letter_line_beats_option_mentions_in_the_explanation():
    text = "D\n\nExplanation: option A is wrong because the question asks for a river."
    assert extract_answer(text, kind="choice").value == "D"


def test_choice_listing_of_the_options_is_not_an_answer():
    text = "Let's look at the options:\nA. bank\nB. library\nC. school\nThe best fit is the library."
    assert extract_answer(text, kind="choice") is None


def test_choice_answer_after_a_listing_of_the_options_is_found():
    text = "Let's look at the options:\nA. bank\nB. library\nC. school\n\nSo the library, B."
    answer = extract_answer(text, kind="choice")
    assert (answer.value, answer.source, answer.start) == ("B", "choice", text.rindex("B"))


def test_choice_inline_listing_is_skipped_but_a_later_mention_counts():
    text = "Options: (A) bank (B) library (C) school. I think (B) fits."
    answer = extract_answer(text, kind="choice")
    assert (answer.value, answer.start) == ("B", text.rindex("B"))


def test_choice_letters_outside_choices_do_not_count():
    assert extract_answer("The answer is (E).", kind="choice", choices="ABCD") is None
    assert extract_answer("The answer is (e).", kind="choice", choices="abcde").value == "E"


def test_choice_text_without_a_letter_has_no_answer():
    assert extract_answer("Sorry, none of these seem right to me.", kind="choice") is None


@pytest.mark.parametrize("choices", ["1234", "", ["A", "B"]])
def test_choices_must_be_a_string_of_letters(choices):
    with pytest.raises(ValueError, match="choices=.*string of option letters"):
        extract_answer("The answer is 2.", kind="choice", choices=choices)


# --- GSM8K references ---------------------------------------------------------------------------


def test_parse_gsm8k_gold_reads_the_number_after_the_marker():
    assert parse_gsm8k_gold(GSM8K_SOLUTION) == "72"


def test_parse_gsm8k_gold_normalises_separators():
    assert parse_gsm8k_gold("It costs 2 * 600 = <<2*600=1200>>1200.\n#### 1,200") == "1200"


def test_parse_gsm8k_gold_without_marker_is_an_error():
    with pytest.raises(ValueError, match="no '####'"):
        parse_gsm8k_gold("The answer is 5.")


def test_parse_gsm8k_gold_with_text_after_marker_is_an_error():
    with pytest.raises(ValueError, match="not a number: 'five'"):
        parse_gsm8k_gold("#### five")


def test_importing_the_package_loads_no_heavy_framework():
    code = (
        "import sys, rlsf_verl.answers; "
        "print(sorted(m for m in ('torch', 'transformers', 'verl', 'ray') if m in sys.modules))"
    )
    repo_root = str(Path(rlsf_verl.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo_root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip() == "[]"


# --- a LaTeX answer written without $ after the cue: where it starts and ends --------------------


@pytest.mark.parametrize(
    ("text", "written", "value"),
    [
        (r"The answer is -\frac{1}{2}.", r"-\frac{1}{2}", r"-\frac{1}{2}"),
        (r"So the answer is 2\sqrt{3}, since both sides are positive.", r"2\sqrt{3}", r"2\sqrt{3}"),
        (r"The answer is 0.75.", "0.75", "0.75"),
        (r"The answer is (-\infty, 3].", r"(-\infty, 3]", r"(-\infty,3]"),
        (r"The answer is [1, 5) because 5 is excluded.", "[1, 5)", "[1,5)"),
        (r"The answer is \begin{pmatrix} 1 \\ 2 \end{pmatrix}.", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", None),
        (r"The answer is 5\text{ cm}.", r"5\text{ cm}", "5"),
        ("The answer is 10 cm.", "10", "10"),
        (r"The answer is 30^\circ!", r"30^\circ", "30"),
        (r"The answer is 25\%.", r"25\%", "25"),
        ("The answer is 1,200 dollars.", "1,200", "1200"),
        ("The answer is 42 (the number of apples).", "42", "42"),
        (r"The answer is 2x^2 + 3x - 1; check by expanding.", "2x^2 + 3x - 1", "2x^2+3x-1"),
        (r"Final answer: \frac{\sqrt{3}}{2}", r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt{3}}{2}"),
        (r"The answer is \text{Tuesday}.", r"\text{Tuesday}", r"\text{Tuesday}"),
        ("The answer is x = 5.", "5", "5"),
        ("The answer is forty-two.", "forty-two", "42"),
        ("**Final answer:** **7**", "7", "7"),
        ("#### \\frac{3}{4}", r"\frac{3}{4}", r"\frac{3}{4}"),
    ],
)
def test_bare_answer_after_the_cue_is_read_whole_and_its_span_is_exact(text, written, value):
    answer = extract_answer(text)
    assert span(text, answer) == written
    if value is not None:
        assert answer.value == value


@pytest.mark.parametrize(
    "text",
    ["The answer is clear.", "The answer is one of the two.", "I had 3 apples and got 9 more. The answer is a dozen."],
)
def test_prose_after_the_cue_is_no_answer_and_earlier_numbers_do_not_stand_in(text):
    assert extract_answer(text) is None


def test_a_calculation_after_the_cue_is_still_read_when_no_answer_cue_precedes_it():
    text = "The answer is not obvious. We add 12 + 24 = 36."
    assert (extract_answer(text).value, extract_answer(text).source) == ("36", "last_number")


@pytest.mark.parametrize("text", ["The answer is A, B or C.", "The answer is B or C.", "You can choose a, b or c."])
def test_choice_hedging_between_options_names_none(text):
    assert extract_answer(text, kind="choice") is None


@pytest.mark.parametrize(
    "text", ["(C)", "C)", "answer: C", "the correct option is C", "I choose C", "I'd go with (c).", "I pick C."]
)
def test_choice_usual_forms_name_the_option(text):
    answer = extract_answer(text, kind="choice")
    assert (answer.value, span(text, answer).upper()) == ("C", "C")


@pytest.mark.parametrize(
    "text",
    [
        r"The answer is \frac{1}{",
        "The answer is (3, 4",
        r"The answer is \begin{pmatrix} 1",
        "#### \\frac{1}{",
        "Answer: -",
    ],
)
def test_an_answer_cut_off_by_the_length_limit_is_no_answer_not_its_first_number(text):
    assert extract_answer(text) is None


@pytest.mark.parametrize(
    "text", ["#### " * 5000 + "(", "answer=#" * 5000, "The answer is \\frac{" * 3000, "answer: (" * 3000]
)
def test_degenerate_outputs_with_thousands_of_cues_have_no_answer(text):
    # Bounded work per cue keeps these linear; before the bound the first one took over a minute.
    assert extract_answer(text) is None


@pytest.mark.parametrize("text", ["The answer is 5 or 6.", r"The answer is \frac{1}{2} or \frac{1}{3}."])
def test_a_math_answer_hedging_between_two_values_is_no_answer(text):
    assert extract_answer(text) is None


@pytest.mark.parametrize(
    ("words", "value"),
    [("twelve", "12"), ("forty-two", "42"), ("five hundred and twelve", "512"), ("minus seven", "-7")],
)
def test_a_number_spelled_out_in_words_is_read(words, value):
    assert extract_answer(f"The answer is {words}.").value == value


@pytest.mark.parametrize("words", ["one two three", "twelve three", "ninety ten", "a hundred"])
def test_words_that_form_no_single_number_are_no_answer(words):
    assert extract_answer(f"The answer is {words}.") is None


@pytest.mark.parametrize("text", ["The answer is 5+.", "The answer is 2x -", "The answer is 3^."])
def test_an_expression_ending_in_an_operator_is_unfinished_and_no_answer(text):
    assert extract_answer(text) is None
