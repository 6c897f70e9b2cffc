"""Frozen scorer models that return per-token confidence over a response, behind one interface.

``LocalScorer`` runs a transformers model inside the reward worker (CPU or GPU) and gives every
signal; ``ServerScorer`` asks an OpenAI-compatible completions server (vLLM) for the top-2
log-probs of each prompt token, so it gives the top-2 margin and log p of the response tokens only
(entropy and self-certainty need the whole distribution, which such servers do not return).
Both take token ids, so the scorer reads exactly the tokens the answer span indexes.

>>> scorer = LocalScorer("/models/tiny")                                   # doctest: +SKIP
>>> scores = asyncio.run(scorer.score([1, 2, 3], [4, 5]))                  # doctest: +SKIP
>>> scores.margin.shape                                                     # doctest: +SKIP
torch.Size([2])
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Protocol

import torch

from rlsf_verl.reward_managers.http import JSONClient
from rlsf_verl.signals import token_signals


@dataclass(frozen=True)
class TokenScores:
    """Signals at each response token, [R] float32 each; None where the backend cannot give them."""

    margin: torch.Tensor  # p(top1) - p(top2) of the distribution the token was drawn from
    logprob: torch.Tensor  # log p(token)
    entropy: torch.Tensor | None
    self_certainty: torch.Tensor | None


class Scorer(Protocol):
    signals: frozenset[str]  # which TokenScores fields this backend fills

    async def score(self, prompt_ids: list[int], response_ids: list[int]) -> TokenScores: ...

    async def close(self) -> None: ...


class LocalScorer:
    """A transformers causal LM scoring requests in micro-batches (requests arriving within
    ``batch_wait_s`` of each other share one forward pass, up to ``max_batch_size``)."""

    signals = frozenset({"margin", "logprob", "entropy", "self_certainty"})

    def __init__(
        self,
        model_path: str,
        device: str = "cpu",
        dtype: str = "float32",
        max_batch_size: int = 8,
        batch_wait_s: float = 0.005,
    ):
        from rlsf_verl.models import load_causal_lm

        if max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size}: must be at least 1")
        self.model, self.tokenizer = load_causal_lm(model_path, dtype=dtype)
        self.model.to(device)
        self.device = device
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    def score_batch(self, requests: list[tuple[list[int], list[int]]]) -> list[TokenScores]:
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
        mask = torch.zeros_like(attention, dtype=torch.bool)
        for row, (prompt, _) in enumerate(requests):
            mask[row, len(prompt) - 1 : lengths[row] - 1] = True
        signals = token_signals(logits, mask.to(self.device), targets)
        out = []
        for row, (prompt, _) in enumerate(requests):
            span = slice(len(prompt) - 1, lengths[row] - 1)
            out.append(
                TokenScores(
                    margin=signals.margin[row, span].float().cpu(),
                    logprob=signals.logprob[row, span].float().cpu(),
                    entropy=signals.entropy[row, span].float().cpu(),
                    self_certainty=signals.self_certainty[row, span].float().cpu(),
                )
            )
        return out

    async def score(self, prompt_ids: list[int], response_ids: list[int]) -> TokenScores:
        _check_request(prompt_ids, response_ids)
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(((list(prompt_ids), list(response_ids)), future))
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = [await self._queue.get()]
            if self.max_batch_size > 1 and self._queue.qsize() < self.max_batch_size - 1:
                await asyncio.sleep(self.batch_wait_s)  # let concurrent requests join this batch
            while len(pending) < self.max_batch_size and not self._queue.empty():
                pending.append(self._queue.get_nowait())
            try:
                results = await loop.run_in_executor(None, self.score_batch, [request for request, _ in pending])
            except Exception as error:  # hand the failure to every waiting caller, keep serving
                for _, future in pending:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(pending, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()


class ServerScorer:
    """Top-2 prompt log-probs from an OpenAI-compatible ``/v1/completions`` server (vLLM's
    ``prompt_logprobs`` extension), one request per response; the server does the batching."""

    signals = frozenset({"margin", "logprob"})

    def __init__(self, base_url: str, model: str, timeout_s: float = 120.0, max_retries: int = 3):
        url = base_url.rstrip("/") + "/v1/completions"
        self.client = JSONClient(url, "reward.self_confidence.server_url", timeout_s, max_retries)
        self.model = model

    async def score(self, prompt_ids: list[int], response_ids: list[int]) -> TokenScores:
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
        margins, logprobs = [], []
        for index in range(len(prompt_ids), len(ids)):
            entries = positions[index]
            ranked = sorted(entries.values(), key=lambda entry: entry["rank"])
            top = [math.exp(entry["logprob"]) for entry in ranked[:2]]
            margins.append(top[0] - (top[1] if len(top) > 1 else 0.0))
            logprobs.append(entries[str(ids[index])]["logprob"])
        return TokenScores(
            margin=torch.tensor(margins, dtype=torch.float32),
            logprob=torch.tensor(logprobs, dtype=torch.float32),
            entropy=None,
            self_certainty=None,
        )

    async def close(self) -> None:
        await self.client.close()


def _check_request(prompt_ids: list[int], response_ids: list[int]) -> None:
    if not prompt_ids:
        raise ValueError("prompt_ids: empty; the scorer needs at least one prompt token to predict the response from")
    if not response_ids:
        raise ValueError("response_ids: empty; score empty responses as 0 before asking the scorer")
