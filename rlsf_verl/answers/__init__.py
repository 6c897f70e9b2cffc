r"""Find the final answer in generated text, normalise it, compare it, and map it to tokens.

Used by the RLSF pipeline (answer span -> token positions -> confidence), by reward functions
(correctness) and by calibration analysis. Pure Python; tokenizers are passed in by the caller.

>>> answer = extract_answer("3 + 4 = 7, so the answer is $7.")
>>> answer.value, answer.source, answers_equal(answer.value, "7.0")
('7', 'answer_is', True)
"""

from rlsf_verl.answers.equality import answers_equal
from rlsf_verl.answers.extract import KINDS, Answer, extract_answer, parse_gsm8k_gold
from rlsf_verl.answers.normalize import find_numbers, normalize_expression, normalize_number
from rlsf_verl.answers.spans import answer_token_span, char_span_to_token_span

__all__ = [
    "KINDS",
    "Answer",
    "answer_token_span",
    "answers_equal",
    "char_span_to_token_span",
    "extract_answer",
    "find_numbers",
    "normalize_expression",
    "normalize_number",
    "parse_gsm8k_gold",
]
