"""A confidence signal of your own, registered in a few lines: the mean probability of the response's tokens.

Once this module is imported, ``mean_token_prob`` works wherever the built-in signals do. For verl's
processes, name the module in ``RLSF_VERL_EXTRA_MODULES`` and put its folder on ``PYTHONPATH``; then
``reward.self_confidence.signal=mean_token_prob`` selects it (``custom_signal_dry_run.sh`` shows the
config of a recipe that does). It reads only the log-probs of the response tokens, so every source can give
it: the ``self_confidence`` reward's local scorer and a vLLM completions server, and verl's own
``old_log_probs`` for on-policy RLIF (``rlsf.rlif.signal=mean_token_prob``).
Unlike ``neg_trajectory_entropy`` (the mean log-prob, unbounded below) it lies in [0, 1], so calibration
analysis (ECE, reliability diagrams) can read it as a probability.

Run it to see the signal next to the built-in mean log-prob on three tokens you can check by hand:

    python examples/custom_signal.py
"""

import math

import torch

from rlsf_verl.signals import TokenInputs, get_signal, register_signal, sequence_confidence, signal_names


@register_signal("mean_token_prob", needs=("logprob",), floor=0.0)
def mean_token_prob(inputs: TokenInputs) -> torch.Tensor:
    """p of each response token; the response's mean is a length-normalised likelihood in [0, 1]."""
    return inputs.logprob.exp()


def main() -> None:
    probs = [0.9, 0.5, 0.7]  # p(y_t) of three response tokens
    inputs = TokenInputs(logprob=torch.tensor([math.log(p) for p in probs]), source="three hand-made log-probs")
    print(f"registered signals: {', '.join(signal_names())}")
    print(f"token probabilities: {probs}")
    for name in ("mean_token_prob", "neg_trajectory_entropy"):
        signal = get_signal(name)
        value = sequence_confidence(signal.token_values(inputs), None, signal)
        print(f"{name:<24} {value:+.4f}  ({signal.description})")
    print(
        f"check: mean of the probabilities = {sum(probs) / len(probs):.4f}, "
        f"mean of their logs = {sum(map(math.log, probs)) / len(probs):.4f}"
    )
    try:
        get_signal("mean_token_porb")
    except ValueError as error:
        print(f"a misspelt name fails early: {error}")


if __name__ == "__main__":
    main()
