import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from rlsf_verl.pipeline.bradley_terry import (
    CONFIG_FILE,
    RewardModelConfig,
    compute_rewards,
    fit_reward_model,
    heldout_score_rows,
    load_reward_model,
    pair_rewards,
    pairwise_accuracy,
    read_heldout_scores,
    reward_model_text,
    save_reward_model,
    train_reward_model,
)
from rlsf_verl.pipeline.preferences import PreferencePair, split_pairs

# A tiny model gains nothing from threads, and on a shared 2-core runner they oversubscribe.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return tiny_model_dir


def prompt(i):
    return f"<|im_start|>user\nhow many apples {i}?<|im_end|>\n<|im_start|>assistant\n"


def yes_no_pairs(n_prompts):
    """A learnable toy preference: 'yes' answers are always chosen over 'no' answers."""
    return [
        PreferencePair(prompt(i), "so the answer is yes", "so the answer is no", 1.5, 0.95, 0.55, i, 0, 1)
        for i in range(n_prompts)
    ]


TOY = RewardModelConfig(learning_rate=3e-3, max_steps=12, per_device_train_batch_size=8)


@pytest.fixture(scope="module")
def toy_split():
    return split_pairs(yes_no_pairs(24), heldout_fraction=0.25, seed=0)


@pytest.fixture(scope="module")
def fitted(base, toy_split):
    return fit_reward_model(toy_split[0], base, TOY)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    return save_reward_model(fitted, tmp_path_factory.mktemp("rm") / "reward_model", {"note": "test"})


def test_config_defaults_follow_the_paper_lora_rank_and_use_the_margin():
    config = RewardModelConfig()
    assert (config.lora_r, config.use_margin, config.heldout_fraction) == (8, True, 0.2)


@pytest.mark.parametrize(
    "field, value",
    [
        ("lora_r", 0),
        ("learning_rate", -1.0),
        ("max_steps", 0),
        ("heldout_fraction", 1.0),
        ("gradient_accumulation_steps", 0),
        ("device", "tpu"),
        ("dtype", "float16"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"RewardModelConfig.{field}"):
        RewardModelConfig(**{field: value})


def test_cpu_float32_with_lora_stays_the_default():
    config = RewardModelConfig()
    assert (config.device, config.dtype, config.use_lora, config.gradient_checkpointing) == (
        "auto",
        "float32",
        True,
        False,
    )


def test_full_fine_tuning_trains_every_weight_and_learns_the_toy_preference(base, toy_split):
    train, heldout = toy_split
    config = RewardModelConfig(learning_rate=1e-3, max_steps=12, per_device_train_batch_size=8, use_lora=False)
    fitted = fit_reward_model(train, base, config)
    lm = AutoModelForCausalLM.from_pretrained(base)
    # k_proj and the MLP are no LoRA target: only full fine-tuning moves them
    attention = fitted.model.model.layers[0].self_attn
    assert not torch.equal(attention.k_proj.weight, lm.model.layers[0].self_attn.k_proj.weight)
    assert not torch.equal(fitted.model.model.layers[0].mlp.up_proj.weight, lm.model.layers[0].mlp.up_proj.weight)
    assert type(fitted.model).__name__.endswith("ForSequenceClassification")  # no peft wrapper
    assert pairwise_accuracy(fitted.model, fitted.tokenizer, heldout) > 0.8


def test_gradient_checkpointing_trains_to_the_same_loss(base, toy_split):
    # Checkpointing recomputes activations in the backward pass: the same numbers, less memory.
    one_step = dict(learning_rate=3e-3, max_steps=2, per_device_train_batch_size=8)
    plain = fit_reward_model(toy_split[0], base, RewardModelConfig(**one_step))
    checkpointed = fit_reward_model(toy_split[0], base, RewardModelConfig(**one_step, gradient_checkpointing=True))
    assert checkpointed.train_loss == pytest.approx(plain.train_loss, rel=1e-5)


def test_reward_model_text_ends_the_assistant_turn_as_the_chat_template_does(base):
    tokenizer = AutoTokenizer.from_pretrained(base)
    conversation = [{"role": "user", "content": "how many apples 3?"}, {"role": "assistant", "content": "4"}]
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert reward_model_text(prompt(3), "4", tokenizer) == rendered
    assert reward_model_text(prompt(3), "4<|im_end|>", tokenizer) == rendered


def test_training_loss_is_finite(fitted):
    assert math.isfinite(fitted.train_loss) and fitted.n_steps == TOY.max_steps


def test_score_head_starts_at_zero_and_is_trained(fitted):
    # load_base_as_reward_model zeroes the head: a non-zero head after merging proves it was trained
    # (modules_to_save) and that the merge kept the trained copy.
    assert fitted.model.score.weight.abs().sum() > 0


def test_lora_is_merged_into_the_backbone(fitted, base):
    lm = AutoModelForCausalLM.from_pretrained(base)
    attention = fitted.model.model.layers[0].self_attn
    assert not torch.equal(attention.q_proj.weight, lm.model.layers[0].self_attn.q_proj.weight)
    assert torch.equal(attention.k_proj.weight, lm.model.layers[0].self_attn.k_proj.weight)  # not a LoRA target


def test_toy_preference_is_learnt_on_held_out_prompts(fitted, toy_split):
    _, heldout = toy_split
    assert pairwise_accuracy(fitted.model, fitted.tokenizer, heldout) > 0.8


def test_pairwise_accuracy_is_the_fraction_of_pairs_where_chosen_scores_higher(fitted):
    pairs = [
        PreferencePair(prompt(1), "so the answer is yes", "so the answer is no", 1.0, 1.0, 0.0, 1, 0, 1),
        PreferencePair(prompt(2), "so the answer is no", "so the answer is yes", 1.0, 1.0, 0.0, 2, 0, 1),
        PreferencePair(prompt(3), "the answer is 42", "so the answer is no", 1.0, 1.0, 0.0, 3, 0, 1),
    ]
    prompts = [p.prompt for p in pairs]
    chosen = compute_rewards(fitted.model, fitted.tokenizer, prompts, [p.chosen for p in pairs]).tolist()
    rejected = compute_rewards(fitted.model, fitted.tokenizer, prompts, [p.rejected for p in pairs]).tolist()
    by_hand = sum(c > r for c, r in zip(chosen, rejected, strict=True)) / 3
    accuracy = pairwise_accuracy(fitted.model, fitted.tokenizer, pairs)
    assert 0.0 <= accuracy <= 1.0 and accuracy == pytest.approx(by_hand)


def test_rewards_do_not_depend_on_batching(fitted):
    prompts = [prompt(i) for i in range(5)]
    responses = ["yes", "so the answer is no", "a much longer response about the apples", "no", "42"]
    one_batch = compute_rewards(fitted.model, fitted.tokenizer, prompts, responses, batch_size=5)
    one_by_one = compute_rewards(fitted.model, fitted.tokenizer, prompts, responses, batch_size=1)
    torch.testing.assert_close(one_batch, one_by_one, atol=1e-5, rtol=1e-5)


def test_saved_model_is_a_plain_one_label_sequence_classifier(saved):
    model = AutoModelForSequenceClassification.from_pretrained(saved)
    assert model.config.num_labels == 1
    assert model.config.architectures == ["LlamaForSequenceClassification"]
    assert model.config.pad_token_id == AutoTokenizer.from_pretrained(saved).pad_token_id is not None
    assert not any("adapter" in path.name for path in saved.iterdir())
    assert json.loads((saved / CONFIG_FILE).read_text()) == {"note": "test"}


def test_saved_model_gives_the_rewards_of_the_model_in_memory(fitted, saved):
    prompts = [prompt(i) for i in range(4)]
    responses = ["so the answer is yes", "so the answer is no", "42", "no idea"]
    in_memory = compute_rewards(fitted.model, fitted.tokenizer, prompts, responses)
    reloaded, tokenizer = load_reward_model(saved)
    torch.testing.assert_close(compute_rewards(reloaded, tokenizer, prompts, responses), in_memory)


def test_pairwise_accuracy_of_a_saved_directory_matches_the_model_in_memory(fitted, saved, toy_split):
    _, heldout = toy_split
    assert pairwise_accuracy(saved, None, heldout) == pairwise_accuracy(fitted.model, fitted.tokenizer, heldout)


def test_pairwise_accuracy_of_no_pairs_is_an_error(fitted):
    with pytest.raises(ValueError, match="pairs: empty"):
        pairwise_accuracy(fitted.model, fitted.tokenizer, [])


def test_train_reward_model_holds_out_prompts_and_records_its_run(base, tmp_path):
    pairs = yes_no_pairs(10)
    config = RewardModelConfig(max_steps=2, heldout_fraction=0.2)
    result = train_reward_model(pairs, base, tmp_path / "rm", config)
    assert (result.n_train, result.n_heldout, result.n_too_long, result.n_steps) == (8, 2, 0, 2)
    assert result.heldout_reason is None
    assert result.heldout_accuracy == pairwise_accuracy(tmp_path / "rm", None, split_pairs(pairs, 0.2, 0)[1])
    record = json.loads((tmp_path / "rm" / CONFIG_FILE).read_text())
    assert record["config"]["lora_r"] == 8 and record["result"] == result.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rm"]  # no temporary directory left


def test_train_reward_model_writes_the_held_out_rewards_behind_its_accuracy(base, tmp_path):
    pairs = yes_no_pairs(10)
    result = train_reward_model(pairs, base, tmp_path / "rm", RewardModelConfig(max_steps=2, heldout_fraction=0.2))
    heldout = split_pairs(pairs, 0.2, 0)[1]
    rows = read_heldout_scores(tmp_path / "rm")
    assert [(row["prompt_index"], row["chosen_branch"], row["rejected_branch"]) for row in rows] == [
        (pair.prompt_index, pair.chosen_branch, pair.rejected_branch) for pair in heldout
    ]
    model, tokenizer = load_reward_model(tmp_path / "rm")
    assert rows == heldout_score_rows(heldout, *pair_rewards(model, tokenizer, heldout))  # the saved model's, exactly
    wins = sum(row["chosen"] > row["rejected"] for row in rows)
    assert result.heldout_accuracy == pytest.approx(wins / len(rows), abs=1e-7)


def test_a_directory_without_held_out_rewards_reads_as_none(saved, tmp_path):
    assert read_heldout_scores(saved) is None and read_heldout_scores(tmp_path) is None


def test_the_rlsf_margin_enters_the_bradley_terry_loss(base, tmp_path):
    # With a zero score head every initial reward is 0, so the loss of one full-batch step is
    # mean(softplus(margin)) with the margin and log 2 without it.
    margins = [1.0, 2.0, 2.5]
    pairs = [PreferencePair(**{**p.to_dict(), "margin": m}) for p, m in zip(yes_no_pairs(3), margins, strict=True)]
    one_step = dict(max_steps=1, per_device_train_batch_size=3, heldout_fraction=0.0)
    with_margin = fit_reward_model(pairs, base, RewardModelConfig(**one_step))
    without = fit_reward_model(pairs, base, RewardModelConfig(**one_step, use_margin=False))
    expected = sum(math.log1p(math.exp(m)) for m in margins) / 3
    assert with_margin.train_loss == pytest.approx(expected, rel=1e-5)
    assert without.train_loss == pytest.approx(math.log(2), rel=1e-5)


def test_without_held_out_prompts_the_result_says_why(base, tmp_path):
    result = train_reward_model(yes_no_pairs(1), base, tmp_path / "rm", RewardModelConfig(max_steps=1))
    assert result.heldout_accuracy is None
    assert result.heldout_reason == "all pairs come from one prompt; holding prompts out needs at least 2"
    assert read_heldout_scores(tmp_path / "rm") == []


def test_pairs_longer_than_max_length_are_left_out_and_counted(base):
    pairs = yes_no_pairs(2) + [PreferencePair(prompt(9), "apples " * 200, "no", 1.5, 0.95, 0.5, 9, 0, 1)]
    fitted = fit_reward_model(pairs, base, RewardModelConfig(max_steps=1, max_length=64))
    assert fitted.n_too_long == 1 and len(fitted.trained_pairs) == 2
