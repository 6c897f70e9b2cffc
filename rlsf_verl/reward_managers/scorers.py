"""Frozen scorer models that return a signal's per-token values over a response, behind one interface.

``LocalScorer`` runs a transformers model on the CPU of the reward worker and can feed any registered
signal (it has the full logits); ``ServerScorer`` asks an OpenAI-compatible completions server (vLLM)
for the top-2 log-probs of each prompt token, so it gives ``logprob``, ``margin`` and ``chosen_margin``
only, and only signals that read nothing else (``answer_margin``, ``neg_trajectory_entropy``) work with
it. Both take token ids, so the scorer reads exactly the tokens the answer span indexes, and both
continue a prefix greedily (``continue_greedy``: the answer cue that locates an answer span).

On a GPU cluster the scorer is served: verl's reward workers are CPU-only Ray actors (verl 0.9.1
``reward_loop.py`` creates them without GPUs), so a local scorer would be a float32 CPU copy of the
model in every worker. ``server_url_for`` picks the server: ``server_url`` if set, else the router of
the reward model verl serves (``reward.reward_model.enable=True``, ``model_path=<scorer>``), which
proxies vLLM's ``/v1/completions``.

>>> scorer = LocalScorer("/models/tiny", get_signal("self_certainty"))     # doctest: +SKIP
>>> values = asyncio.run(scorer.score([1, 2, 3], [4, 5]))                  # doctest: +SKIP
>>> values.shape                                                            # doctest: +SKIP
torch.Size([2])
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from rlsf_verl.batching import MicroBatcher
from rlsf_verl.pipeline.decode import DecodeConfig, HFCoTDecoder
from rlsf_verl.reward_managers.http import JSONClient
from rlsf_verl.signals import Signal, TokenInputs


class Scorer(Protocol):
    available: frozenset[str]  # the TokenInputs fields this backend gives

    async def score(self, prompt_ids: list[int], response_ids: list[int]) -> torch.Tensor:
        """The signal's value at each response token, [R] float32."""
        ...

    async def continue_greedy(self, prefix_ids: list[int], max_new_tokens: int) -> list[int]:
        """The scorer's greedy continuation of ``prefix_ids``, at most ``max_new_tokens`` ids."""
        ...

    async def close(self) -> None: ...


class LocalScorer:
    """A transformers causal LM scoring requests in micro-batches (requests arriving within
    ``batch_wait_s`` of each other share one forward pass, up to ``max_batch_size``); greedy
    continuations are batched the same way, by the RLSF pipeline's own decoder."""

    available = frozenset({"logits", "logprob", "margin", "chosen_margin", "entropy", "self_certainty"})

    def __init__(
        self,
        model_path: str,
        signal: Signal,
        device: str = "cpu",
        dtype: str = "float32",
        max_batch_size: int = 8,
        batch_wait_s: float = 0.005,
    ):
        from rlsf_verl.models import load_causal_lm

        check_local_device(device)
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size}: must be at least 1")
        self.model, self.tokenizer = load_causal_lm(model_path, dtype=dtype)
        self.model.to(device)
        # The RLSF pipeline's own greedy decoder: the cue continues exactly as it does there.
        greedy = DecodeConfig(batch_size=max_batch_size, progress=False)
        self._decoder = HFCoTDecoder(self.model, self.tokenizer, greedy)
        self.signal = signal
        self.device = device
        # ("score" | "continue", request): the two kinds of request run as separate calls
        self._batcher = MicroBatcher(
            self._run_batch, max_size=max_batch_size, max_wait_s=batch_wait_s, key=lambda request: request[0]
        )

    def score_batch(self, requests: list[tuple[list[int], list[int]]]) -> list[torch.Tensor]:
        """One right-padded forward pass over ``(prompt_ids, response_ids)`` pairs."""
        lengths = [len(prompt) + len(response) for prompt, response in requests]
        width = max(lengths)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(requests), width), pad, dtype=torch.long)
        attention = torch.zeros((len(requests), width), dtype=torch.long)
        for row, (prompt, response) in enumerate(requests):
            input_ids[row, : lengths[row]] = torch.tensor(prompt + response, dtype=torch.long)
            attention[row, : lengths[row]] = 1
        with torch.no_grad():
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)).logits
        # position t predicts token t + 1: a response token at index i is predicted at i - 1
        targets = torch.roll(input_ids, shifts=-1, dims=1).to(self.device)
        out = []
        for row, (prompt, _) in enumerate(requests):
            span = slice(len(prompt) - 1, lengths[row] - 1)
            inputs = TokenInputs(logits=logits[row, span], token_ids=targets[row, span], source="the local scorer")
            out.append(self.signal.token_values(inputs).cpu())
        return out

    async def score(self, prompt_ids: list[int], response_ids: list[int]) -> torch.Tensor:
        _check_request(prompt_ids, response_ids)
        return await self._batcher.submit(("score", (list(prompt_ids), list(response_ids))))

    def continue_batch(self, requests: list[tuple[list[int], int]]) -> list[list[int]]:
        """Greedy continuations of ``(prefix_ids, max_new_tokens)`` requests, EOS not kept."""
        out: list[list[int]] = [[] for _ in requests]
        for budget in {budget for _, budget in requests}:
            rows = [r for r, (_, b) in enumerate(requests) if b == budget]
            continued = self._decoder.continue_greedy([requests[r][0] for r in rows], budget)
            for r, (ids, _) in zip(rows, continued, strict=True):
                out[r] = ids
        return out

    async def continue_greedy(self, prefix_ids: list[int], max_new_tokens: int) -> list[int]:
        return await self._batcher.submit(("continue", (list(prefix_ids), max_new_tokens)))

    def _run_batch(self, requests: list[tuple[str, tuple]]) -> list:
        run = self.score_batch if requests[0][0] == "score" else self.continue_batch
        return run([request for _, request in requests])

    async def close(self) -> None:
        await self._batcher.close()


class ServerScorer:
    """Top-2 prompt log-probs from an OpenAI-compatible ``/v1/completions`` server (vLLM's
    ``prompt_logprobs`` extension), one request per response; the server does the batching."""

    available = frozenset({"logprob", "margin", "chosen_margin"})

    def __init__(
        self,
        base_url: str,
        model: str,
        signal: Signal,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        what: str = "reward.self_confidence.server_url",
    ):
        url = base_url.rstrip("/") + "/v1/completions"
        self.client = JSONClient(url, what, timeout_s, max_retries)
        self.model = model
        self.signal = signal

    async def score(self, prompt_ids: list[int], response_ids: list[int]) -> torch.Tensor:
        _check_request(prompt_ids, response_ids)
        ids = list(prompt_ids) + list(response_ids)
        payload = {"model": self.model, "prompt": ids, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 2}
        body = await self.client.post(payload)
        positions = body["choices"][0].get("prompt_logprobs")
        if positions is None or len(positions) != len(ids):
            raise RuntimeError(
                f"{self.client.url}: expected prompt_logprobs for {len(ids)} tokens, got "
                f"{None if positions is None else len(positions)}; the server must be vLLM (prompt_logprobs extension)"
            )
        margins, chosen_margins, logprobs = [], [], []
        for index in range(len(prompt_ids), len(ids)):
            entries = positions[index]
            # The top-2 entries, plus the response token's own when it ranks lower.
            ranked = sorted(entries.values(), key=lambda entry: entry["rank"])
            top = [math.exp(entry["logprob"]) for entry in ranked[:2]]
            second = top[1] if len(top) > 1 else 0.0
            margins.append(top[0] - second)
            logprobs.append(entries[str(ids[index])]["logprob"])
            chosen_margins.append(math.exp(logprobs[-1]) - second)
        inputs = TokenInputs(
            margin=torch.tensor(margins, dtype=torch.float32),
            chosen_margin=torch.tensor(chosen_margins, dtype=torch.float32),
            logprob=torch.tensor(logprobs, dtype=torch.float32),
            source="a completions server (backend=server)",
        )
        return self.signal.token_values(inputs)

    async def continue_greedy(self, prefix_ids: list[int], max_new_tokens: int) -> list[int]:
        """The server's greedy completion of ``prefix_ids`` as token ids (vLLM's ``return_token_ids``);
        the EOS it stopped at may be among them."""
        payload = {
            "model": self.model,
            "prompt": list(prefix_ids),
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
            "return_token_ids": True,
        }
        body = await self.client.post(payload)
        token_ids = body["choices"][0].get("token_ids")
        if token_ids is None:
            raise RuntimeError(
                f"{self.client.url}: the completion has no token_ids; the server must be vLLM (return_token_ids), "
                "which answer-span signals need to find the answer"
            )
        return list(token_ids)

    async def close(self) -> None:
        await self.client.close()


SERVED_ROUTE = (
    "backend=server with reward.reward_model.enable=True reward.reward_model.model_path=<scorer> (verl serves it "
    "on the cluster's GPUs behind its router), or backend=server server_url=http://host:port (your vLLM server)"
)


def check_local_device(device: str) -> None:
    """Refuse a local scorer anywhere but the CPU: verl's reward workers get no GPU.

    >>> check_local_device("cpu")
    """
    if device != "cpu":
        raise ValueError(
            f"reward.self_confidence.device={device}: the local scorer runs inside verl's reward workers, which "
            f"get no GPU; set device=cpu, or serve the scorer on the GPUs: {SERVED_ROUTE}"
        )


def server_url_for(server_url: str | None, router_address: str | None) -> tuple[str, str]:
    """``(base URL, what to check if unreachable)`` of the completions server the scorer asks: ``server_url``
    if set, else verl's reward-model router (``host:port``, handed to reward managers by verl).

    >>> server_url_for(None, "10.0.0.7:8123")
    ('http://10.0.0.7:8123', "reward.reward_model (verl's reward-model router)")
    """
    if server_url:
        return server_url, "reward.self_confidence.server_url"
    if router_address:
        return f"http://{router_address}", "reward.reward_model (verl's reward-model router)"
    raise ValueError(f"reward.self_confidence.server_url: not set and verl serves no reward model; use {SERVED_ROUTE}")


def _check_request(prompt_ids: list[int], response_ids: list[int]) -> None:
    if not prompt_ids:
        raise ValueError("prompt_ids: empty; the scorer needs at least one prompt token to predict the response from")
    if not response_ids:
        raise ValueError("response_ids: empty; score empty responses as 0 before asking the scorer")
