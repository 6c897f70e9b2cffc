import dataclasses
import json
import math
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlsf_verl.pipeline.dpo import CONFIG_FILE, DPOTrainingConfig, train_dpo
from rlsf_verl.pipeline.preferences import PreferencePair, prompt_for_tokenizer
from rlsf_verl.signals.entropy import token_logprobs

# A tiny model gains nothing from threads, and on a shared 2-core runner they oversubscribe.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return tiny_model_dir


def pairs(n_prompts=6):
    return [
        PreferencePair(
            f"<|im_start|>user\nhow many apples {i}?<|im_end|>\n<|im_start|>assistant\n",
            f"{i} + 1 = {i + 1}. So the answer is {i + 1}.",
            "so the answer is no",
            1.5,
            0.95,
            0.55,
            i,
            0,
            1,
        )
        for i in range(n_prompts)
    ]


# A rate far above the paper's 1e-6 so that two steps visibly move the tiny model's weights.
FAST = DPOTrainingConfig(learning_rate=1e-2, max_steps=2, per_device_train_batch_size=3)


@pytest.fixture(scope="module")
def lora_run(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo") / "policy"
    return train_dpo(pairs(), base, out, FAST), out


def swapped(pairs_: list[PreferencePair]) -> list[PreferencePair]:
    return [dataclasses.replace(pair, chosen=pair.rejected, rejected=pair.chosen) for pair in pairs_]


def response_logprob(model, tokenizer, prompt: str, response: str) -> float:
    """log p(response + EOS | prompt) under ``model``, tokenised as TRL's DPO tokenises a pair."""
    prompt_ids = tokenizer(prompt_for_tokenizer(prompt, tokenizer))["input_ids"]
    response_ids = tokenizer(response + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = model(ids).logits[:, :-1]
    return token_logprobs(logits, ids[:, 1:])[0, len(prompt_ids) - 1 :].sum().item()


def mean_margin(model_dir, pairs_: list[PreferencePair]) -> float:
    """The policy's mean log-prob margin log p(chosen) - log p(rejected) over ``pairs_``; DPO raises it."""
    model, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    return sum(
        response_logprob(model, tokenizer, pair.prompt, pair.chosen)
        - response_logprob(model, tokenizer, pair.prompt, pair.rejected)
        for pair in pairs_
    ) / len(pairs_)


def test_config_defaults_are_the_papers_beta_and_learning_rate_with_lora_r8():
    config = DPOTrainingConfig()
    assert (config.beta, config.learning_rate, config.use_lora, config.lora_r) == (0.2, 1e-6, True, 8)


@pytest.mark.parametrize(
    "field, value",
    [
        ("beta", 0.0),
        ("learning_rate", -1e-6),
        ("max_steps", -2),
        ("gradient_accumulation_steps", 0),
        ("device", "gpu"),
        ("dtype", "bf16"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"DPOTrainingConfig.{field}"):
        DPOTrainingConfig(**{field: value})


def test_dpo_trains_the_requested_steps_on_all_pairs(lora_run):
    result, _ = lora_run
    assert (result.n_train, result.n_steps) == (6, 2)
    # The first step starts at log 2 (policy == reference); two steps cannot be far from it.
    assert math.isfinite(result.train_loss) and abs(result.train_loss - math.log(2)) < 0.5


def test_dpo_raises_the_policys_margin_of_chosen_over_rejected(lora_run, base):
    _, out = lora_run
    assert mean_margin(out, pairs()) > mean_margin(base, pairs()) + 1.0


def test_dpo_on_swapped_pairs_lowers_that_margin(base, tmp_path):
    """The same run with chosen and rejected swapped moves the policy the other way: DPO follows the
    pairs' order, not a preference of the model's own (the tiny model already prefers one side)."""
    train_dpo(swapped(pairs()), base, tmp_path / "policy", FAST)
    assert mean_margin(tmp_path / "policy", pairs()) < mean_margin(base, pairs()) - 1.0


def test_saved_policy_is_a_plain_causal_lm_with_its_tokenizer(lora_run):
    _, out = lora_run
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.architectures == ["LlamaForCausalLM"]
    assert AutoTokenizer.from_pretrained(out).pad_token == "<|pad|>"
    assert not any("adapter" in path.name for path in out.iterdir())


def test_lora_updates_are_merged_into_the_saved_weights(lora_run, base):
    _, out = lora_run
    trained = AutoModelForCausalLM.from_pretrained(out).state_dict()
    original = AutoModelForCausalLM.from_pretrained(base).state_dict()
    changed = {name for name in original if not torch.equal(trained[name], original[name])}
    assert changed  # the policy moved
    assert all(name.endswith(("q_proj.weight", "v_proj.weight")) for name in changed)  # only LoRA targets


def test_run_record_holds_base_config_and_result(lora_run, base):
    result, out = lora_run
    record = json.loads((out / CONFIG_FILE).read_text())
    assert record["base_model"] == str(base)
    assert record["config"]["beta"] == 0.2 and record["config"]["learning_rate"] == 1e-2
    assert record["result"] == result.to_dict()


def test_full_fine_tuning_without_lora_also_moves_other_weights(base, tmp_path):
    config = DPOTrainingConfig(learning_rate=1e-2, max_steps=1, per_device_train_batch_size=3, use_lora=False)
    train_dpo(pairs(3), base, tmp_path / "policy", config)
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "policy")
    original = AutoModelForCausalLM.from_pretrained(base)
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, original.model.layers[0].mlp.up_proj.weight)


def test_a_tokenizer_eos_that_does_not_end_generation_is_rejected(base, tmp_path):
    # TRL appends tokenizer.eos_token to every response; a wrong one would teach a wrong turn end.
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    tokenizer = AutoTokenizer.from_pretrained(copy)
    tokenizer.eos_token = "<|im_start|>"
    tokenizer.save_pretrained(copy)
    with pytest.raises(
        ValueError, match=r"tokenizer.eos_token: '<\|im_start\|>' .* Set tokenizer.eos_token = '<\|im_end\|>'"
    ):
        train_dpo(pairs(2), copy, tmp_path / "policy", FAST)


def test_no_pairs_is_an_error_that_points_to_the_pair_stats(base, tmp_path):
    with pytest.raises(ValueError, match="PairStats.explain"):
        train_dpo([], base, tmp_path / "policy")
