"""The reward-model server of the ``hf_cpu`` rollout: vLLM's ``/classify`` API answered on CPU by a
transformers sequence classifier (a Bradley-Terry RM as TRL saves it: ``*ForSequenceClassification``,
``num_labels=1``, ``pad_token_id`` set).

verl starts one per reward-model replica (``reward.reward_model.rollout.name=hf_cpu``) and puts its
naive HTTP router in front; rlsf-verl's ``rlsf_rm`` manager and any reward function then POST
vLLM's payload to ``/classify``::

    {"model": "...", "input": [token ids] | [[ids], ...] | "text" | ["text", ...],
     "use_activation": false, "add_special_tokens": false}

and read ``data[i]["probs"]``: the classifier's logits, or with ``use_activation`` (vLLM's default)
the activation vLLM applies (sigmoid for one label, softmax for more, none for a ``regression``
``problem_type``). The score is the one the model's own forward gives for the unpadded sequence
(read at the last non-pad token, as in training). Requests arriving together are scored as
right-padded batches of at most ``max_batch_tokens`` tokens. Bad input is an HTTP 400 whose body
names the field; it is also logged, because verl's router turns a worker's 400 into a 500.

>>> import asyncio                                                            # doctest: +SKIP
>>> server = HFCPURewardServer("runs/rlsf/reward_model")                       # doctest: +SKIP
>>> address = asyncio.run(server.start("127.0.0.1"))    # "127.0.0.1:<free port>" # doctest: +SKIP
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import torch

from rlsf_verl.batching import MicroBatcher

logger = logging.getLogger(__name__)

BATCH_WINDOW_S = 0.02  # requests arriving within this window share one forward pass
MAX_BODY_BYTES = 64 << 20


class ClassifyRequestError(ValueError):
    """A ``/classify`` request the server cannot score; answered with HTTP 400 and this message."""


def classify_activation(config: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """What vLLM applies to a classifier's logits when a request asks for ``use_activation``.

    >>> from transformers import PretrainedConfig
    >>> classify_activation(PretrainedConfig(num_labels=1))(torch.tensor([0.0])).item()
    0.5
    >>> classify_activation(PretrainedConfig(num_labels=1, problem_type="regression"))(torch.tensor([2.0])).item()
    2.0
    """
    problem_type = getattr(config, "problem_type", None)
    if problem_type == "regression":
        return lambda logits: logits
    if problem_type == "multi_label_classification" or config.num_labels < 2:
        return torch.sigmoid
    return lambda logits: torch.softmax(logits, dim=-1)


class HFCPURewardServer:
    """A one-process HTTP server scoring token sequences with a float32 sequence classifier.

    ``max_model_len``: longest sequence accepted (default: the model's ``max_position_embeddings``).
    ``max_batch_tokens``: padded tokens per forward pass (at least one sequence per pass).
    """

    def __init__(
        self,
        model_path: str,
        max_model_len: int | None = None,
        max_batch_tokens: int = 8192,
        trust_remote_code: bool = False,
    ):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens={max_batch_tokens}: must be >= 1")
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_path, dtype=torch.float32, trust_remote_code=trust_remote_code
        ).eval()
        if self.model.config.pad_token_id is None:
            raise ValueError(
                f"reward model {model_path}: config.pad_token_id is not set; the score is read at the last "
                "non-pad token, so set it (model.config.pad_token_id = tokenizer.pad_token_id) and save again"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.model_path = model_path
        self.vocab_size = self.model.get_input_embeddings().num_embeddings
        self.max_model_len = max_model_len or getattr(self.model.config, "max_position_embeddings", None)
        self.max_batch_tokens = max_batch_tokens
        self.activation = classify_activation(self.model.config)
        self._batcher = MicroBatcher(self._logits_per_request, max_wait_s=BATCH_WINDOW_S)
        self._runner: Any = None

    # --- requests --------------------------------------------------------------------------------

    def sequences(self, body: Any) -> list[list[int]]:
        """The token sequences of a ``/classify`` body, checked; :class:`ClassifyRequestError` if unusable."""
        if not isinstance(body, dict):
            raise ClassifyRequestError(f"request body: expected a JSON object, got {type(body).__name__}")
        if "input" not in body:
            raise ClassifyRequestError(
                "input: missing; send token ids, a list of token-id lists, a text or a list of texts "
                "(chat 'messages' requests are not served: render the chat and send its text or ids)"
            )
        add_special_tokens = body.get("add_special_tokens", True)
        if not isinstance(add_special_tokens, bool):
            raise ClassifyRequestError(f"add_special_tokens={add_special_tokens!r}: must be true or false")
        raw = body["input"]
        if isinstance(raw, str) or (isinstance(raw, list) and raw and all(_is_token_id(x) for x in raw)):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise ClassifyRequestError(
                f"input: {_preview(raw)} is not a non-empty text, token-id list, or list of either"
            )
        sequences = []
        for index, item in enumerate(raw):
            if isinstance(item, str):
                item = self.tokenizer(item, add_special_tokens=add_special_tokens)["input_ids"]
            elif not isinstance(item, list) or not all(_is_token_id(x) for x in item):
                raise ClassifyRequestError(f"input[{index}]: {_preview(item)} is neither a text nor a list of ints")
            sequences.append(self._checked(item, index))
        return sequences

    def _checked(self, ids: list[int], index: int) -> list[int]:
        if not ids:
            raise ClassifyRequestError(f"input[{index}]: no tokens; the reward model needs at least one token")
        outside = [token for token in ids if not 0 <= token < self.vocab_size]
        if outside:
            raise ClassifyRequestError(
                f"input[{index}]: token ids {outside[:5]} are outside the reward model's vocabulary "
                f"[0, {self.vocab_size}); were they made with another tokenizer?"
            )
        if self.max_model_len is not None and len(ids) > self.max_model_len:
            raise ClassifyRequestError(
                f"input[{index}]: {len(ids)} tokens, more than max_model_len={self.max_model_len} "
                "(reward.reward_model.rollout.max_model_len)"
            )
        return ids

    def use_activation(self, body: dict) -> bool:
        value = body.get("use_activation")
        if value is None:
            return True  # vLLM's default
        if not isinstance(value, bool):
            raise ClassifyRequestError(f"use_activation={value!r}: must be true, false or null")
        return value

    # --- scoring ---------------------------------------------------------------------------------

    @torch.no_grad()
    def logits(self, sequences: list[list[int]]) -> torch.Tensor:
        """``[len(sequences), num_labels]`` float32 logits, each as the unpadded forward gives it.

        Right padding keeps every real token's position and context, and the model reads its score
        at the last non-pad token, the same one it reads without padding.
        """
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        out = torch.empty((len(sequences), self.model.config.num_labels), dtype=torch.float32)
        start = 0
        while start < len(order):
            stop = start + 1
            while stop < len(order) and (stop - start + 1) * len(sequences[order[stop]]) <= self.max_batch_tokens:
                stop += 1
            rows = order[start:stop]
            width = len(sequences[rows[-1]])
            input_ids = torch.full((len(rows), width), self.model.config.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for row, index in enumerate(rows):
                input_ids[row, : len(sequences[index])] = torch.tensor(sequences[index])
                attention_mask[row, : len(sequences[index])] = 1
            out[rows] = self.model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
            start = stop
        return out

    async def batched_logits(self, sequences: list[list[int]]) -> torch.Tensor:
        """:meth:`logits` of one request's sequences, computed together with concurrent requests'."""
        return await self._batcher.submit(sequences)

    def _logits_per_request(self, requests: list[list[list[int]]]) -> list[torch.Tensor]:
        logits = self.logits([sequence for sequences in requests for sequence in sequences])
        return list(logits.split([len(sequences) for sequences in requests]))

    async def classify(self, body: Any) -> dict:
        """The ``/classify`` response for a request body, in vLLM's layout."""
        sequences = self.sequences(body)
        use_activation = self.use_activation(body)
        logits = await self.batched_logits(sequences)
        probs = self.activation(logits) if use_activation else logits
        labels = self.model.config.id2label
        tokens = sum(len(ids) for ids in sequences)
        return {
            "id": f"classify-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": body.get("model") or self.model_path,
            "data": [
                {
                    "index": index,
                    "label": labels.get(int(row.argmax())),
                    "probs": row.tolist(),
                    "num_classes": len(row),
                }
                for index, row in enumerate(probs)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
        }

    # --- HTTP ------------------------------------------------------------------------------------

    async def _handle_classify(self, request):
        from aiohttp import web

        try:
            body = await request.json()
        except ValueError as error:
            return _bad_request(f"request body: not JSON ({error})")
        try:
            return web.json_response(await self.classify(body))
        except ClassifyRequestError as error:
            return _bad_request(str(error))
        except Exception as error:
            logger.exception("hf_cpu reward server: scoring failed")
            return _error_response(500, "InternalServerError", f"{type(error).__name__}: {error}")

    async def start(self, host: str | None = None) -> str:
        """Serve ``POST /classify`` on a free port of ``host`` (default: this Ray node's IP); return
        the address ``"host:port"`` (``"[host]:port"`` for IPv6)."""
        from aiohttp import web

        if self._runner is not None:
            raise RuntimeError("the reward server is already started")
        if host is None:
            import ray

            host = ray.util.get_node_ip_address()
        host = host.strip("[]")
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/classify", self._handle_classify)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        ipv6 = ":" in host
        sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((host, 0))  # the OS picks a free port: no window in which another process takes it
        await web.SockSite(runner, sock).start()
        self._runner = runner
        port = sock.getsockname()[1]
        return f"[{host}]:{port}" if ipv6 else f"{host}:{port}"

    async def stop(self) -> None:
        """Close the HTTP server (requests in flight are answered first)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # verl's replica controls: the model stays in host memory, nothing to free or reload.
    async def wake_up(self):
        pass

    async def sleep(self):
        pass


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _preview(value: Any, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _error_response(status: int, kind: str, message: str):
    from aiohttp import web

    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status)


def _bad_request(message: str):
    logger.warning("hf_cpu reward server: HTTP 400: %s", message)
    return _error_response(400, "BadRequestError", message)
