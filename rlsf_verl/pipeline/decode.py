"""CoT decoding: for each prompt, the k most likely first tokens, each continued greedily.

Every generated token keeps its value of a confidence signal (any registered in
``rlsf_verl.signals``; by default ``answer_margin``, p(chosen) - p(top2): p1 - p2 for a greedy token,
and for a branch's first token its own probability against the second most likely, which is 0 for
the second branch and negative below it, as the RLSF authors score it), computed from the
distribution it was chosen from during generation (no second forward pass): the confidence stage
averages it over the answer span or the whole trace, as the signal says. The Hugging Face decoder
batches prompts x branches with left padding and the KV cache; the vLLM decoder does the same
through ``LLM.generate``, and offers signals only what its top-2 log-probs (plus the chosen token's)
give: ``logprob``, ``margin`` and ``chosen_margin``.

>>> from rlsf_verl.models import build_tiny_model, load_causal_lm
>>> model, tokenizer = load_causal_lm(build_tiny_model("/tmp/rlsf-tiny-doc"))   # doctest: +SKIP
>>> config = DecodeConfig(k=3, max_new_tokens=16)                                # doctest: +SKIP
>>> decoder = HFCoTDecoder(model, tokenizer, config, signal="neg_entropy")        # doctest: +SKIP
>>> traces = decoder.decode(["How many apples are left?"])                      # doctest: +SKIP
>>> [(t.branch, t.signal, len(t.token_ids) == len(t.token_confidence)) for t in traces]  # doctest: +SKIP
[(0, 'neg_entropy', True), (1, 'neg_entropy', True), (2, 'neg_entropy', True)]
"""

from __future__ import annotations

import math
import os
import re
from abc import ABC, abstractmethod
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from rlsf_verl.models import TORCH_DTYPES, eos_token_ids
from rlsf_verl.signals.answer_span import AnswerSpanRule, SpanTokens

GPU_EXTRA_HINT = "pip install '.[pipeline-gpu]' (from the rlsf-verl repository)"
BACKENDS = ("hf", "vllm", "server")
# What a vLLM completion tells about each generated token: its log-prob and the top-2 log-probs.
VLLM_INPUTS = frozenset({"logprob", "margin", "chosen_margin"})


@dataclass
class DecodeConfig:
    """Settings of CoT decoding and of the answer-cue step that scores its traces."""

    k: int = 5  # first tokens per prompt (top-k of the first step); the paper uses 5, up to 10
    max_new_tokens: int = 96  # token budget per branch, first token and EOS included
    batch_size: int = 64  # branch sequences per generation batch; tune it, wider is not faster on CPU
    use_chat_template: bool = True  # wrap each prompt as a user turn when the tokenizer has a template
    # The answer span (rlsf_verl.signals.answer_span): the authors' cue and 20 tokens after it.
    answer_cue: str = AnswerSpanRule.cue  # appended after a trace to make the model state its answer
    answer_max_tokens: int = AnswerSpanRule.max_tokens  # greedy tokens generated after the cue
    # true differs from the authors: a span must hold a letter or digit (their code takes a lone ",")
    answer_require_alphanumeric: bool = AnswerSpanRule.require_alphanumeric
    progress: bool = True  # tqdm progress bar
    # Where decoding and the answer cue run (rlsf_verl.pipeline.backends): "hf" (transformers, batched
    # here), "vllm" (an in-process vllm.LLM, prefix caching on) or "server" (OpenAI-compatible vLLM servers).
    backend: str = "hf"
    device: str = "auto"  # hf: auto (a GPU if torch sees one, else the CPU), cpu, cuda or cuda:N
    dtype: str = "auto"  # hf and vllm: auto (float32 on the CPU, bfloat16 on a GPU), float32, bfloat16, float16
    # server: a URL or a list of URLs (data-parallel replicas; requests are spread round-robin)
    server_url: Any = None
    # server: a shell command the run starts once per URL (placeholders {port}, {index}, {model}) and stops
    # at its end; with {model}, the evaluation of the DPO model restarts the servers on that model.
    server_command: str | None = None
    server_ready_timeout_s: int = 900  # how long a started server may take to answer /health
    vllm_args: dict[str, Any] = field(default_factory=dict)  # vllm: more vllm.LLM arguments (gpu_memory_utilization)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"decode.backend: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(self.device)):
            raise ValueError(f"decode.device: {self.device!r} is not one of auto, cpu, cuda, cuda:N")
        if self.dtype not in ("auto", *TORCH_DTYPES):
            raise ValueError(f"decode.dtype: {self.dtype!r} is not one of auto, {', '.join(TORCH_DTYPES)}")
        if self.backend != "hf" and self.device != "auto":
            raise ValueError(
                f"decode.device={self.device} applies to backend=hf only; vLLM picks its own GPU "
                "(set CUDA_VISIBLE_DEVICES), so leave decode.device=auto"
            )
        if isinstance(self.server_url, str):
            self.server_url = [self.server_url]
        if self.server_url is not None:
            self.server_url = list(self.server_url)
            bad = [u for u in self.server_url if not isinstance(u, str) or not u.startswith(("http://", "https://"))]
            if bad or not self.server_url:
                raise ValueError(f"decode.server_url: {bad or '[]'} must be http(s)://host:port URLs")
        if self.backend == "server" and not self.server_url:
            raise ValueError("decode.server_url: backend=server needs the server's URL (or a list of them)")
        if self.server_command is not None and self.backend != "server":
            raise ValueError("decode.server_command: only backend=server starts servers; set decode.backend=server")
        for name in ("k", "max_new_tokens", "batch_size", "server_ready_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DecodeConfig.{name} must be a positive integer, got {value!r}")
        for name in ("use_chat_template", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"DecodeConfig.{name} must be true or false, got {getattr(self, name)!r}")
        _ = self.answer_rule  # checks the answer_* fields, naming them

    @property
    def answer_rule(self) -> AnswerSpanRule:
        """How the answer span of a trace is found (``answer_*`` fields)."""
        return AnswerSpanRule.from_settings(
            "DecodeConfig", self.answer_cue, self.answer_max_tokens, self.answer_require_alphanumeric
        )


@dataclass
class Trace:
    """One CoT branch: a prompt continued from one of its top-k first tokens.

    ``token_ids`` holds the generated tokens, first token included, EOS and anything after it
    excluded; ``token_confidence[t]`` is the value of the registered signal named ``signal`` for
    ``token_ids[t]`` and the distribution it was chosen from. ``finished`` is False when the token
    budget ran out before EOS.
    """

    prompt_index: int
    branch: int  # rank of the first token among the top-k (0 = the greedy one)
    first_token_id: int
    prompt: str  # the text sent to the model, chat template applied
    text: str  # the continuation, special tokens skipped
    token_ids: list[int]
    token_confidence: list[float]
    signal: str
    finished: bool
    # The greedy continuation of the answer cue after this trace (the span rule's cue pass), made
    # while decoding with its settings; None: not made yet (score_traces then makes it).
    answer_ids: list[int] | None = field(default=None, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (one JSONL row)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]):
        """Inverse of :meth:`to_dict`; missing or unknown keys raise ValueError."""
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing, unknown = required - row.keys(), row.keys() - names
        if missing or unknown:
            raise ValueError(
                f"{cls.__name__}.from_dict: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}; "
                f"was the row written by {cls.__name__}.to_dict?"
            )
        return cls(**row)


def render_prompt_text(tokenizer, prompt: str, use_chat_template: bool) -> str:
    """The text the model sees: ``prompt`` as a user turn of the chat template, or as is."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of already rendered text; no special tokens are added (the chat template has them)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _check_prompts(prompts: list[str]) -> None:
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise TypeError("prompts must be a list of strings (one user message per prompt)")


def _check_prefixes(prefixes: list[list[int]], max_new_tokens: int) -> None:
    if any(len(p) == 0 for p in prefixes):
        raise ValueError("prefixes: every prefix needs at least one token id")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")


class CoTDecoder(ABC):
    """CoT decoding backend: ``decode`` makes the traces, ``continue_greedy`` serves the answer cue.

    ``signal`` (a :class:`rlsf_verl.signals.Signal`) gives each generated token its confidence.
    """

    tokenizer: Any
    config: DecodeConfig
    signal: Any

    def render(self, prompt: str) -> str:
        """The text sent to the model for ``prompt``."""
        return render_prompt_text(self.tokenizer, prompt, self.config.use_chat_template)

    def _rendered(self, prompts: list[str]) -> tuple[list[str], list[list[int]]]:
        """The rendered texts of ``prompts`` and their token ids; an empty render is refused."""
        _check_prompts(prompts)
        rendered = [self.render(p) for p in prompts]
        prompt_ids = [encode_text(self.tokenizer, text) for text in rendered]
        for i, ids in enumerate(prompt_ids):
            if not ids:
                raise ValueError(f"prompts[{i}] renders to no tokens; give a non-empty prompt")
        return rendered, prompt_ids

    def _trace(
        self,
        prompt_index: int,
        branch: int,
        first: int,
        prompt: str,
        ids: list[int],
        values: list[float],
        finished: bool,
        answer_ids: list[int] | None,
    ) -> Trace:
        return Trace(
            prompt_index=prompt_index,
            branch=branch,
            first_token_id=first,
            prompt=prompt,
            text=self.tokenizer.decode(ids, skip_special_tokens=True),
            token_ids=ids,
            token_confidence=values,
            signal=self.signal.name,
            finished=finished,
            answer_ids=answer_ids,
        )

    @abstractmethod
    def decode(self, prompts: list[str]) -> list[Trace]:
        """``len(prompts) * k`` traces, ordered by (prompt_index, branch)."""

    @abstractmethod
    def continue_greedy(self, prefixes: list[list[int]], max_new_tokens: int) -> list[tuple[list[int], list[float]]]:
        """Greedy continuation of each token-id prefix: (ids without EOS, their token confidences),
        in input order."""


class HFCoTDecoder(CoTDecoder):
    """CoT decoding with a Hugging Face causal LM, batched with left padding and the KV cache.

    Branches are sorted by prompt length and cut into batches of ``config.batch_size`` rows.
    Each batch runs one forward pass over its distinct prompts, takes their top-k first tokens,
    copies each prompt's KV cache to its branches and continues all rows greedily; rows that
    reach EOS or the budget leave the batch. The result equals decoding every branch alone.
    ``signal`` names the registered signal each token's confidence is computed with, from the
    logits of its step.
    """

    def __init__(self, model, tokenizer, config: DecodeConfig | None = None, signal: str = "answer_margin"):
        from rlsf_verl.signals import get_signal

        self.model = model
        self.tokenizer = tokenizer
        self.config = config if config is not None else DecodeConfig()
        if not isinstance(self.config, DecodeConfig):
            raise TypeError(f"config must be a DecodeConfig, got {type(self.config).__name__}")
        self.signal = get_signal(signal)
        self.eos_ids = eos_token_ids(tokenizer, model)
        pad = tokenizer.pad_token_id
        # The pad id is only ever masked out; any valid id will do.
        self.pad_id = int(pad) if pad is not None else min(self.eos_ids)
        self.device = next(model.parameters()).device
        self._span_tokens = SpanTokens(tokenizer)

    def decode(self, prompts: list[str]) -> list[Trace]:
        import torch
        from tqdm.auto import tqdm

        k, budget = self.config.k, self.config.max_new_tokens
        rendered, prompt_ids = self._rendered(prompts)
        # Branches of similar prompt length share a batch, which keeps the left padding small.
        branches = sorted(
            ((i, j) for i in range(len(prompts)) for j in range(k)), key=lambda b: (len(prompt_ids[b[0]]), b)
        )
        traces = []
        # Counted in tokens: a batch of branches takes minutes on CPU and must show it is moving.
        bar = tqdm(total=len(branches) * budget, desc="CoT decoding", unit="tok", disable=not self.config.progress)
        with bar, torch.inference_mode():
            for start in range(0, len(branches), self.config.batch_size):
                batch = branches[start : start + self.config.batch_size]
                rows = {i: r for r, i in enumerate(dict.fromkeys(i for i, _ in batch))}
                cache, mask, logits = self._prefill([prompt_ids[i] for i in rows])
                if k > logits.shape[-1]:
                    raise ValueError(f"DecodeConfig.k={k} exceeds the vocabulary size {logits.shape[-1]}")
                top = logits.topk(k, dim=-1).indices
                # [prompts, k]: one pass per branch rank over the prompts' own rows, so each prompt's
                # logits are read where they are instead of being copied to all of its branches.
                first_values = torch.stack([self._token_values(logits, top[:, j]) for j in range(k)], dim=1)
                source = torch.tensor([rows[i] for i, _ in batch], device=self.device)
                cache.reorder_cache(source)
                first = torch.stack([top[rows[i], j] for i, j in batch])
                values = torch.stack([first_values[rows[i], j] for i, j in batch])
                generated = self._greedy(cache, mask[source], first, values, budget, bar, answer_cue=True)
                for (i, j), token, row in zip(batch, first.tolist(), generated, strict=True):
                    traces.append(self._trace(i, j, token, rendered[i], row.ids, row.values, row.finished, row.answer))
                # Rows that stopped early leave their unused budget: take it off the total.
                bar.total -= sum(budget - len(row.ids) for row in generated)
                bar.set_postfix(branches=f"{len(traces)}/{len(branches)}")
                bar.refresh()
        return sorted(traces, key=lambda t: (t.prompt_index, t.branch))

    def continue_greedy(self, prefixes: list[list[int]], max_new_tokens: int) -> list[tuple[list[int], list[float]]]:
        import torch
        from tqdm.auto import tqdm

        _check_prefixes(prefixes, max_new_tokens)
        order = sorted(range(len(prefixes)), key=lambda r: len(prefixes[r]))
        results: list[tuple[list[int], list[float]]] = [None] * len(prefixes)
        bar = tqdm(total=len(prefixes), desc="greedy continuation", unit="seq", disable=not self.config.progress)
        with bar, torch.inference_mode():
            for start in range(0, len(order), self.config.batch_size):
                batch = order[start : start + self.config.batch_size]
                cache, mask, logits = self._prefill([list(prefixes[r]) for r in batch])
                tokens = logits.argmax(-1)
                generated = self._greedy(cache, mask, tokens, self._token_values(logits, tokens), max_new_tokens)
                for r, row in zip(batch, generated, strict=True):
                    results[r] = (row.ids, row.values)
                bar.update(len(batch))
        return results

    def _token_values(self, logits, chosen):
        """The signal's value [B] for each ``chosen`` token id [B] under its step's ``logits`` [B, V]."""
        from rlsf_verl.signals import TokenInputs

        return self.signal.token_values(TokenInputs(logits=logits, token_ids=chosen, source="the transformers decoder"))

    def _forward(self, input_ids, mask, cache=None, logits_to_keep: int = 1):
        # Left padding: a row's positions count its real tokens only, so a padded row sees the
        # same rotary positions as the row decoded alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=logits_to_keep,
        )
        return out.past_key_values, out.logits[:, -1, :].float()

    def _prefill(self, prefixes: list[list[int]]):
        """Left-padded forward over ``prefixes``: (KV cache, attention mask [B, L], last logits [B, V])."""
        import torch

        length = max(len(p) for p in prefixes)
        input_ids = torch.full((len(prefixes), length), self.pad_id, dtype=torch.long, device=self.device)
        mask = torch.zeros_like(input_ids)
        for r, ids in enumerate(prefixes):
            input_ids[r, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[r, length - len(ids) :] = 1
        cache, logits = self._forward(input_ids, mask)
        return cache, mask, logits

    def _greedy(self, cache, mask, tokens, values, budget: int, bar=None, answer_cue: bool = False) -> list[_Row]:
        """Feed the chosen ``tokens`` [B] (with their signal ``values`` [B]) and continue greedily.

        Returns each row's :class:`_Row`. A row's trace ends at EOS (not kept) or once it holds ``budget``
        tokens. Without ``answer_cue`` the row then leaves the batch, its cache rows dropped with it.
        With it, the row goes on to the answer cue of the span rule, reusing its KV cache instead of
        reading prompt and trace again: the trailing whitespace tokens that
        :meth:`SpanTokens.cue_prefix` drops are masked out (positions count unmasked tokens only, so
        masking equals removing), the separator and cue are fed, and the model continues greedily for
        ``answer_max_tokens`` or to EOS, which is what :meth:`continue_greedy` gives for that prefix.
        ``bar`` (tqdm) advances by the trace tokens kept at each step.
        """
        import torch

        rule = self.config.answer_rule
        rows = [_Row() for _ in range(len(tokens))]
        alive = list(range(len(tokens)))
        first_column = mask.shape[1]  # the column of each row's first trace token
        while True:
            keep, feed, hidden, appended = [], [], [], 0
            steps = zip(alive, tokens.tolist(), values.tolist(), strict=True)
            for r, (index, token, value) in enumerate(steps):
                row = rows[index]
                if row.answer is None:  # the trace
                    if token in self.eos_ids:
                        row.finished, in_cache = True, len(row.ids)
                    else:
                        row.ids.append(token)
                        row.values.append(value)
                        appended += 1
                        if len(row.ids) < budget:
                            keep.append(r)
                            feed.append(token)
                            continue
                        in_cache = len(row.ids) - 1  # the last token was never fed
                    if not answer_cue:
                        continue
                    kept, cue_ids = self._span_tokens.cue_after(row.ids, rule.cue)
                    hidden += [(r, first_column + t) for t in range(kept, in_cache)]
                    row.pending, row.answer = row.ids[in_cache:kept] + cue_ids, []
                elif not row.pending:  # the answer after the cue
                    if token in self.eos_ids:
                        continue
                    row.answer.append(token)
                    if len(row.answer) == rule.max_tokens:
                        continue
                    row.pending = [token]
                keep.append(r)
                feed.append(row.pending.pop(0))
            if bar is not None:
                bar.update(appended)
            if hidden:
                mask[tuple(zip(*hidden, strict=True))] = 0
            if not keep:
                return rows
            if len(keep) < len(alive):
                index = torch.tensor(keep, device=self.device)
                cache.reorder_cache(index)
                mask = mask[index]
                alive = [alive[r] for r in keep]
            mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)
            cache, logits = self._forward(torch.tensor(feed, device=self.device)[:, None], mask, cache)
            tokens = logits.argmax(-1)
            values = self._token_values(logits, tokens)


@dataclass
class _Row:
    """One row of :meth:`HFCoTDecoder._greedy`: its trace (ids, signal values, whether it reached EOS),
    then its answer-cue continuation (``answer``; None while the trace runs) and the tokens still to
    feed before the model continues again (``pending``: the cue)."""

    ids: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    finished: bool = False
    answer: list[int] | None = None
    pending: list[int] = field(default_factory=list)


def _top2_probabilities(logprobs: dict[int, float]) -> tuple[float, float]:
    # vLLM returns the top-2 log-probs (plus the chosen token's when it ranks lower): the best two.
    best = sorted(logprobs.values(), reverse=True)
    return math.exp(best[0]), (math.exp(best[1]) if len(best) > 1 else 0.0)


def token_values_from_logprobs(signal, steps: list[dict[int, float]], chosen: list[int]) -> list[float]:
    """``signal``'s value for each ``chosen`` token id, from vLLM's log-probs of its step
    (``{token_id: logprob}`` holding the top-2 and the chosen token): the signal reads ``logprob``,
    ``margin`` and ``chosen_margin`` only (:data:`VLLM_INPUTS`)."""
    import torch

    from rlsf_verl.signals import TokenInputs

    logprobs = [step[token] for step, token in zip(steps, chosen, strict=True)]
    top2 = [_top2_probabilities(step) for step in steps]
    inputs = TokenInputs(
        logprob=torch.tensor(logprobs),
        margin=torch.tensor([first - second for first, second in top2]),
        chosen_margin=torch.tensor([math.exp(lp) - second for lp, (_, second) in zip(logprobs, top2, strict=True)]),
        source="the vLLM decoder",
    )
    return signal.token_values(inputs).tolist()


@dataclass
class Completion:
    """One vLLM completion as the decoders read it: the generated ids (the EOS it stopped at included,
    as vLLM returns it), each step's ``{token_id: logprob}`` (top-n plus the chosen token) and
    whether it ``stopped`` at an EOS (else the token budget ran out)."""

    token_ids: list[int]
    steps: list[dict[int, float]]
    stopped: bool


class LogprobCoTDecoder(CoTDecoder):
    """CoT decoding from a vLLM engine's completions (:meth:`complete`): a one-token pass with top-k
    log-probs picks the first tokens, then greedy continuations (``temperature=0``, ``logprobs=2``)
    give ids and confidences; each branch's first token is valued from the one-token pass, against
    its own probability. The engine caches the prompt's KV (prefix caching), so a prompt's k
    branches read it once. vLLM returns top-2 log-probs, not logits: ``signal`` must read only
    ``logprob``, ``margin`` and ``chosen_margin`` (:data:`VLLM_INPUTS`).
    """

    def __init__(self, tokenizer, config: DecodeConfig | None, signal: str, eos_ids):
        self.signal = vllm_signal(signal)
        self.tokenizer = tokenizer
        self.config = config if config is not None else DecodeConfig()
        if not isinstance(self.config, DecodeConfig):
            raise TypeError(f"config must be a DecodeConfig, got {type(self.config).__name__}")
        self.eos_ids = frozenset(eos_ids)

    @abstractmethod
    def complete(self, prefixes: list[list[int]], max_tokens: int, logprobs: int) -> list[Completion]:
        """Greedy completion of each token-id prefix, with the top-``logprobs`` log-probs of every step."""

    def _greedy(self, prefixes: list[list[int]], max_tokens: int) -> list[tuple[list[int], list[float], bool]]:
        """Per prefix (ids without EOS, token confidences, finished)."""
        results = []
        for completion in self.complete(prefixes, max_tokens, logprobs=2):
            ids = list(completion.token_ids)
            values = token_values_from_logprobs(self.signal, completion.steps, ids)
            if ids and ids[-1] in self.eos_ids:
                ids, values = ids[:-1], values[:-1]
            results.append((ids, values, completion.stopped))
        return results

    def decode(self, prompts: list[str]) -> list[Trace]:
        k, budget = self.config.k, self.config.max_new_tokens
        rendered, prompt_ids = self._rendered(prompts)
        branches = []  # (prompt index, branch, first token, its confidence)
        for i, completion in enumerate(self.complete(prompt_ids, max_tokens=1, logprobs=max(k, 2))):
            step = completion.steps[0]
            ranked = sorted(step, key=lambda token: step[token], reverse=True)[:k]
            if len(ranked) < k:
                raise ValueError(f"DecodeConfig.k={k}: the engine returned only {len(ranked)} first tokens")
            values = token_values_from_logprobs(self.signal, [step] * len(ranked), ranked)
            branches += [(i, j, token, value) for j, (token, value) in enumerate(zip(ranked, values, strict=True))]
        # Branches that already ended (EOS first) or used their budget need no continuation.
        open_branches = [b for b in branches if b[2] not in self.eos_ids and budget > 1]
        continued = self._greedy([prompt_ids[i] + [token] for i, _, token, _ in open_branches], budget - 1)
        tails = dict(zip(((i, j) for i, j, _, _ in open_branches), continued, strict=True))
        made = []  # (prompt index, branch, first token, ids, values, finished)
        for i, j, token, value in branches:
            if token in self.eos_ids:
                made.append((i, j, token, [], [], True))
            else:
                rest, rest_values, finished = tails.get((i, j), ([], [], False))
                made.append((i, j, token, [token, *rest], [value, *rest_values], finished))
        # The answer cue, continued after each trace: the engine's prefix cache holds prompt + trace already.
        rule, span_tokens = self.config.answer_rule, SpanTokens(self.tokenizer)
        cue_prefixes = [span_tokens.cue_prefix(prompt_ids[i], ids, rule.cue) for i, _, _, ids, _, _ in made]
        answers = self.continue_greedy(cue_prefixes, rule.max_tokens)
        return [
            self._trace(i, j, token, rendered[i], ids, values, finished, answer_ids)
            for (i, j, token, ids, values, finished), (answer_ids, _) in zip(made, answers, strict=True)
        ]

    def continue_greedy(self, prefixes: list[list[int]], max_new_tokens: int) -> list[tuple[list[int], list[float]]]:
        _check_prefixes(prefixes, max_new_tokens)
        return [(ids, values) for ids, values, _ in self._greedy(prefixes, max_new_tokens)]


def vllm_signal(signal: str):
    """The registered signal ``signal``, refused by name unless vLLM's log-probs give all it reads."""
    from rlsf_verl.signals import get_signal, signal_names

    spec = get_signal(signal)
    if not spec.usable_with(VLLM_INPUTS):
        usable = [name for name in signal_names() if get_signal(name).usable_with(VLLM_INPUTS)]
        raise ValueError(
            f"signal {signal!r} reads {', '.join(sorted(spec.needs))}, but the vLLM decoder gives only "
            f"{', '.join(sorted(VLLM_INPUTS))} (its top-2 log-probs); decode with decode.backend=hf, "
            f"or use one of these signals: {', '.join(usable)}"
        )
    return spec


class VLLMCoTDecoder(LogprobCoTDecoder):
    """CoT decoding through an in-process ``vllm.LLM`` (:class:`LogprobCoTDecoder` says how).

    ``model`` is a ``vllm.LLM`` or a model path (then ``llm_kwargs`` go to ``vllm.LLM``, with prefix
    caching on). A signal vLLM cannot give is refused before anything is loaded.
    """

    def __init__(
        self, model, tokenizer=None, config: DecodeConfig | None = None, signal: str = "answer_margin", **llm_kwargs
    ):
        vllm_signal(signal)
        try:
            import vllm
        except ImportError as err:
            raise ImportError(f"VLLMCoTDecoder needs vLLM, which is not installed: {GPU_EXTRA_HINT}") from err
        self._vllm = vllm
        model_dir = None
        if isinstance(model, (str, os.PathLike)):
            model_dir = os.fspath(model)
            model = vllm.LLM(model=model_dir, **{"enable_prefix_caching": True, **llm_kwargs})
        self.llm = model
        tokenizer = tokenizer if tokenizer is not None else self.llm.get_tokenizer()
        super().__init__(tokenizer, config, signal, eos_token_ids(tokenizer, model_dir))

    def complete(self, prefixes: list[list[int]], max_tokens: int, logprobs: int) -> list[Completion]:
        # Every sampling setting is explicit: the model's generation_config (a repetition penalty) never applies.
        params = self._vllm.SamplingParams(
            temperature=0.0,
            repetition_penalty=1.0,
            max_tokens=max_tokens,
            logprobs=logprobs,
            stop_token_ids=sorted(self.eos_ids),
        )
        requests = [{"prompt_token_ids": list(p)} for p in prefixes]
        outputs = self.llm.generate(requests, params, use_tqdm=self.config.progress)
        return [
            Completion(
                token_ids=list(out.token_ids),
                steps=[{token: entry.logprob for token, entry in step.items()} for step in out.logprobs],
                stopped=out.finish_reason == "stop",
            )
            for out in (r.outputs[0] for r in outputs)
        ]


class ServerCoTDecoder(LogprobCoTDecoder):
    """CoT decoding through OpenAI-compatible vLLM servers (``/v1/completions``), one or more replicas
    of ``model`` at ``urls``: prompts are sent as token ids and come back as token ids
    (``return_tokens_as_token_ids``), so ids are exact. Up to ``config.batch_size`` requests are in flight
    at once, spread round-robin over the URLs; each server batches what it receives.

    >>> decoder = ServerCoTDecoder(["http://127.0.0.1:8000"], "/models/smollm2", tokenizer)  # doctest: +SKIP
    """

    def __init__(
        self,
        urls: list[str],
        model: str,
        tokenizer,
        config: DecodeConfig | None = None,
        signal: str = "answer_margin",
        eos_ids=None,
        timeout_s: float = 600.0,
    ):
        super().__init__(tokenizer, config, signal, eos_ids if eos_ids is not None else eos_token_ids(tokenizer))
        self.urls, self.model, self.timeout_s = list(urls), model, timeout_s

    def complete(self, prefixes: list[list[int]], max_tokens: int, logprobs: int) -> list[Completion]:
        from concurrent.futures import ThreadPoolExecutor

        from tqdm.auto import tqdm

        def one(index: int) -> Completion:
            body = {
                "model": self.model,
                "prompt": list(prefixes[index]),
                "max_tokens": max_tokens,
                "temperature": 0.0,
                "repetition_penalty": 1.0,
                "logprobs": logprobs,
                "stop_token_ids": sorted(self.eos_ids),
                "return_tokens_as_token_ids": True,
            }
            url = self.urls[index % len(self.urls)]
            return _completion(url, post_json(f"{url}/v1/completions", body, self.timeout_s))

        # Blocking stdlib HTTP on a thread pool: the threads only wait, the servers do the work.
        workers = max(1, min(self.config.batch_size, len(prefixes)))
        with ThreadPoolExecutor(workers) as pool:
            done = pool.map(one, range(len(prefixes)))
            bar = tqdm(done, total=len(prefixes), desc="vLLM server", unit="seq", disable=not self.config.progress)
            return list(bar)


def _token_id(token: str, url: str) -> int:
    if not token.startswith("token_id:"):
        raise RuntimeError(f"{url}: got token {token!r}, not 'token_id:N'; the server must be vLLM")
    return int(token.removeprefix("token_id:"))


def _completion(url: str, response: dict) -> Completion:
    choice = response["choices"][0]
    logprobs = choice.get("logprobs") or {}
    tokens, top = logprobs.get("tokens"), logprobs.get("top_logprobs")
    if tokens is None or top is None:
        raise RuntimeError(f"{url}: the completion has no logprobs; the server must be vLLM")
    ids = [_token_id(t, url) for t in tokens]
    steps = [{_token_id(t, url): lp for t, lp in step.items()} for step in top]
    for step, token, logprob in zip(steps, ids, logprobs["token_logprobs"], strict=True):
        step.setdefault(token, logprob)
    return Completion(token_ids=ids, steps=steps, stopped=choice.get("finish_reason") == "stop")


def post_json(url: str, body: dict | None = None, timeout_s: float = 600.0) -> dict:
    """POST ``body`` (or GET without one) to ``url`` and return the JSON answer; an HTTP error names the
    server's reason. Stdlib only: the server backend needs no HTTP package in the vLLM environment."""
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{url} refused the request (HTTP {error.code}): {error.read().decode()[:300]}") from None
