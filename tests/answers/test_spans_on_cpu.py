import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from rlsf_verl.answers import answer_token_span, char_span_to_token_span

CORPUS = [
    "Natalia sold 48 clips in April and half as many in May.",
    "Natalia sold 48+24 = 72 clips altogether in April and May.",
    "He pays 4 * 300 = 1200 dollars.\n#### $1,200",
    r"So the fraction in lowest terms is \boxed{\frac{1}{2}}.",
    "A person would go to the library to borrow books. The answer is (B).",
]


@pytest.fixture(scope="module")
def tokenizer():
    """A tiny byte-level BPE tokenizer (GPT-2 style offsets) with a BOS token, trained offline."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(CORPUS, trainer)
    bpe.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=True),
            processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bpe.token_to_id("<s>"))]),
        ]
    )
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>")


def decoded_span(tokenizer, text, span):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[span[0] : span[1]]).strip()


def test_token_span_covers_every_token_overlapping_the_characters():
    offsets = [(0, 3), (3, 7), (7, 9), (9, 10)]
    assert char_span_to_token_span(offsets, 5, 8) == (1, 3)


def test_token_span_of_part_of_one_token_is_that_token():
    assert char_span_to_token_span([(0, 4), (4, 8)], 5, 6) == (1, 2)


def test_special_tokens_with_zero_offsets_are_never_part_of_the_span():
    offsets = [(0, 0), (0, 3), (3, 5), (0, 0)]
    assert char_span_to_token_span(offsets, 0, 5) == (1, 3)


def test_empty_width_tokens_do_not_start_or_end_the_span():
    offsets = [(0, 3), (4, 4), (4, 6), (6, 6)]
    assert char_span_to_token_span(offsets, 3, 7) == (2, 3)


def test_characters_no_token_covers_give_none():
    assert char_span_to_token_span([(0, 3), (4, 6)], 10, 12) is None


def test_offsets_may_be_an_array():
    assert char_span_to_token_span(np.array([[0, 3], [3, 5], [5, 9]]), 3, 5) == (1, 2)


@pytest.mark.parametrize(("start", "end"), [(3, 3), (5, 2), (-1, 2)])
def test_an_empty_or_negative_character_span_is_an_error(start, end):
    with pytest.raises(ValueError, match="0 <= start < end"):
        char_span_to_token_span([(0, 3)], start, end)


def test_batched_offsets_are_rejected_with_the_fix():
    with pytest.raises(TypeError, match="offset mapping of one sequence"):
        char_span_to_token_span([[(0, 3), (3, 5)], [(0, 2), (2, 5)]], 0, 2)


def test_answer_token_span_points_at_the_gsm8k_answer_tokens(tokenizer):
    text = CORPUS[1] + "\n#### 72"
    answer, span = answer_token_span(text, tokenizer)
    assert answer.value == "72"
    assert span[1] == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert decoded_span(tokenizer, text, span) == "72"


def test_answer_token_span_covers_currency_and_separators(tokenizer):
    text = CORPUS[2]
    _, span = answer_token_span(text, tokenizer)
    assert decoded_span(tokenizer, text, span) == "$1,200"


def test_answer_token_span_of_a_boxed_answer_covers_its_content(tokenizer):
    text = CORPUS[3]
    _, span = answer_token_span(text, tokenizer)
    assert decoded_span(tokenizer, text, span) == r"\frac{1}{2}"


def test_answer_token_span_of_a_choice_is_the_letter_token(tokenizer):
    text = CORPUS[4]
    answer, span = answer_token_span(text, tokenizer, kind="choice")
    assert answer.value == "B"
    assert decoded_span(tokenizer, text, span) == "B"


def test_answer_token_span_of_a_text_without_answer_is_none(tokenizer):
    assert answer_token_span("Natalia sold clips in April.", tokenizer) is None


def test_offsets_with_a_bos_token_shift_the_span_by_one(tokenizer):
    text = CORPUS[1] + "\n#### 72"
    answer, plain = answer_token_span(text, tokenizer)
    with_bos = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    assert with_bos[0] == (0, 0)
    assert char_span_to_token_span(with_bos, answer.start, answer.end) == (plain[0] + 1, plain[1] + 1)


def test_slow_tokenizer_is_rejected_with_the_fix():
    class SlowTokenizer:
        is_fast = False

    with pytest.raises(TypeError, match="use_fast=True"):
        answer_token_span("#### 7", SlowTokenizer())
