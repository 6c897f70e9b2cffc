"""verl rollout ``hf_cpu``: generation with transformers on CPU, for machines where vLLM cannot run
next to verl.

verl's hybrid trainer asks a rollout for three things, each answered here:

- a server per replica that turns prompt token ids into a :class:`TokenOutput` (``generate``) and
  can sleep and wake (no-ops: nothing to free on CPU): :class:`HFCPUServer`, a Ray actor holding a
  float32 ``AutoModelForCausalLM``. Requests that arrive together are generated as one left-padded
  batch (:class:`rlsf_verl.batching.MicroBatcher`; the agent loop sends a whole batch at once, and
  one sequence at a time is ~5x slower here);
- a replica object that launches that server (:class:`HFCPUReplica`);
- an adapter living in each actor worker that receives the trained weights after every step
  (:class:`HFCPUServerAdapter`); it forwards them to its replica's server by Ray object store.

A reward-model replica (``reward.reward_model.rollout.name=hf_cpu``; verl builds it with
``is_reward_model=True``) serves vLLM's ``/classify`` over HTTP instead
(:class:`rlsf_verl.cpu.reward_server.HFCPURewardServer`), for verl's router and the ``rlsf_rm`` manager.

Log-probs returned with ``logprobs`` are those of the untempered distribution, as vLLM's default.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import NamedTuple

import ray
import torch

from rlsf_verl import compat
from rlsf_verl.batching import MicroBatcher
from rlsf_verl.cpu.reward_server import HFCPURewardServer
from rlsf_verl.models import eos_token_ids

TokenOutput = compat.resolve("TokenOutput")

logger = logging.getLogger(__name__)

ROLLOUT_NAME = "hf_cpu"
BATCH_WINDOW_S = 0.05  # requests arriving within this window share one generate call


def server_actor_name(replica_rank: int) -> str:
    """Ray name of replica ``replica_rank``'s server: the adapters find it by this name."""
    return f"rlsf_hf_cpu_server_{replica_rank}"


def generation_kwargs(sampling_params: dict, max_new_tokens: int) -> dict:
    """``model.generate`` keywords for verl's sampling params (temperature 0 = greedy; top_k -1 = off).

    >>> generation_kwargs({"temperature": 0, "top_p": 1.0, "top_k": -1}, 8)
    {'max_new_tokens': 8, 'do_sample': False}
    >>> generation_kwargs({"temperature": 0.7, "top_p": 0.9, "top_k": 5}, 8)
    {'max_new_tokens': 8, 'do_sample': True, 'temperature': 0.7, 'top_p': 0.9, 'top_k': 5}
    """
    temperature = float(sampling_params.get("temperature", 1.0))
    if temperature < 0:
        raise ValueError(f"rollout temperature={temperature}: must be >= 0 (0 is greedy)")
    kwargs = {"max_new_tokens": int(max_new_tokens), "do_sample": temperature > 0}
    if temperature > 0:
        top_k = int(sampling_params.get("top_k", -1))
        kwargs.update(
            temperature=temperature, top_p=float(sampling_params.get("top_p", 1.0)), top_k=top_k if top_k > 0 else 0
        )
    return kwargs


class _Request(NamedTuple):
    prompt_ids: list[int]
    kwargs: tuple  # generation_kwargs(...) as sorted items: hashable, so it can key a batch
    logprobs: bool


class HFCPUServer:
    """One rollout replica: a transformers causal LM answering verl's ``generate`` calls."""

    def __init__(self, model_path: str, prompt_length: int, response_length: int, seed: int, trust_remote_code: bool):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(seed)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=torch.float32, trust_remote_code=trust_remote_code
        ).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = eos_token_ids(tokenizer, self.model)
        self.prompt_length = prompt_length
        self.response_length = response_length
        self.global_steps: int | None = None
        # requests with other generate() keywords (sampling, length, log-probs) cannot share a call
        self._batcher = MicroBatcher(
            self._generate_batch, max_wait_s=BATCH_WINDOW_S, key=lambda request: (request.kwargs, request.logprobs)
        )

    def max_new_tokens(self, prompt_ids: list[int], sampling_params: dict) -> int:
        """verl's cap: at most ``response_length``, and prompt + response within the configured total."""
        budget = min(self.response_length, self.prompt_length + self.response_length - len(prompt_ids))
        asked = sampling_params.get("max_tokens", sampling_params.get("max_new_tokens", budget))
        return max(1, min(int(asked), budget))

    async def generate(self, request_id: str, prompt_ids: list[int], sampling_params: dict, **_: object) -> TokenOutput:
        """Generate one response; multimodal arguments verl always passes (``image_data=None`` ...) are ignored."""
        kwargs = generation_kwargs(sampling_params, self.max_new_tokens(prompt_ids, sampling_params))
        request = _Request(list(prompt_ids), tuple(sorted(kwargs.items())), bool(sampling_params.get("logprobs")))
        return await self._batcher.submit(request)

    @torch.no_grad()
    def _generate_batch(self, requests: list[_Request]) -> list[TokenOutput]:
        """One left-padded ``generate`` call for requests sharing their keywords and ``logprobs``."""
        prompts, kwargs, logprobs = [r.prompt_ids for r in requests], dict(requests[0].kwargs), requests[0].logprobs
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention_mask[row, width - len(prompt) :] = 1
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids),
            return_dict_in_generate=True,
            output_logits=logprobs,
            **kwargs,
        )
        new_tokens = out.sequences[:, width:]
        token_logprobs = None
        if logprobs:
            logits = torch.stack(out.logits, dim=1).float()  # [batch, new tokens, vocab], untempered
            token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        results = []
        for row in range(len(prompts)):
            tokens = new_tokens[row].tolist()
            length = next((i + 1 for i, token in enumerate(tokens) if token in self.eos_ids), len(tokens))
            results.append(
                TokenOutput(
                    token_ids=tokens[:length],
                    log_probs=token_logprobs[row, :length].tolist() if token_logprobs is not None else None,
                    stop_reason="completed",
                    extra_fields={"global_steps": self.global_steps},
                )
            )
        return results

    def update_weights(self, state: dict[str, torch.Tensor], global_steps: int | None) -> None:
        """Load the actor's weights (HF parameter names); a missing or unknown name is an error.
        ``global_steps=None`` (verl's re-sync after a colocated reward model) keeps the step, as vLLM does."""
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        tied = (
            {name for name in missing if name.endswith("lm_head.weight")}
            if self.model.config.tie_word_embeddings
            else set()
        )
        if set(missing) - tied or unexpected:
            raise ValueError(
                f"weights from the actor do not fit the rollout model: missing {missing}, unexpected {unexpected}"
            )
        if global_steps is not None:
            self.global_steps = global_steps

    # verl's replica controls: nothing to free or resume on CPU, nothing in flight to abort.
    async def wake_up(self):
        pass

    async def sleep(self):
        pass

    async def abort_all_requests(self, reject_request: bool = False):
        pass

    async def resume_generation(self):
        pass

    async def clear_kv_cache(self):
        pass

    async def release_kv_cache(self):
        pass

    async def resume_kv_cache(self):
        pass

    async def start_profile(self, **kwargs):
        pass

    async def stop_profile(self):
        pass


class HFCPUReplica(compat.resolve("RolloutReplica")):
    """A replica made of one server actor (tensor parallelism 1): :class:`HFCPUServer` for the policy,
    :class:`~rlsf_verl.cpu.reward_server.HFCPURewardServer` for a reward model.

    A reward model never receives weights, so its replica starts no worker group: verl's colocated
    and standalone set-ups start one ``CheckpointEngineWorker`` process per replica (it runs on CPU),
    whose only job is to receive weight updates; for an RM it would idle, holding a verl import's
    memory and a share of a logical GPU slot.
    """

    async def init_colocated(self, resource_pool):
        if not self.is_reward_model:
            return await super().init_colocated(resource_pool)
        self.rollout_mode = compat.resolve("RolloutMode").COLOCATED
        self.resource_pool = resource_pool
        await self.launch_servers()

    async def init_standalone(self):
        if not self.is_reward_model:
            return await super().init_standalone()
        self.rollout_mode = compat.resolve("RolloutMode").STANDALONE
        await self.launch_servers()

    async def launch_servers(self):
        if self.world_size != 1:
            section = "reward.reward_model.rollout" if self.is_reward_model else "actor_rollout_ref.rollout"
            raise ValueError(
                f"{section}: tensor/data/pipeline parallel sizes multiply to {self.world_size}; "
                "the hf_cpu rollout runs one process per replica, set them all to 1"
            )
        if self.is_reward_model:
            await self._launch_reward_server()
            return
        server = (
            ray.remote(HFCPUServer)
            .options(name=server_actor_name(self.replica_rank), num_cpus=0, max_concurrency=self.max_concurrency)
            .remote(
                model_path=self.model_config.path,  # verl passes the model section of its config here
                prompt_length=self.config.prompt_length,
                response_length=self.config.response_length,
                seed=self.config.seed if self.config.seed is not None else 0,
                trust_remote_code=self.model_config.get("trust_remote_code", False),
            )
        )
        await server.wake_up.remote()  # returns once the model is loaded
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"hf-cpu://{server_actor_name(self.replica_rank)}"

    async def _launch_reward_server(self):
        server = (
            ray.remote(HFCPURewardServer)
            .options(num_cpus=0)
            .remote(
                model_path=self.model_config.path,
                max_model_len=self.config.max_model_len,
                max_batch_tokens=self.config.max_num_batched_tokens,
                trust_remote_code=self.model_config.get("trust_remote_code", False),
            )
        )
        self._server_address = await server.start.remote()  # "ip:port" on the actor's node
        self.servers = [server]
        self._server_handle = server


class HFCPUServerAdapter(compat.resolve("BaseRollout")):
    """Lives in the actor worker; sends the trained weights to its replica's server."""

    async def resume(self, tags: list[str]):
        pass

    async def release(self):
        pass

    async def update_weights(
        self, weights: Iterable[tuple[str, torch.Tensor]], wire_format: str = "named_tensors", **kwargs
    ):
        if wire_format != "named_tensors":
            raise ValueError(f"hf_cpu rollout receives full named tensors, not wire_format={wire_format!r}")
        state = {name: tensor.detach().to("cpu", copy=True) for name, tensor in weights}
        rank = int(os.environ.get("RANK", "0"))
        if rank % self.replica_world_size() == 0:  # one sender per replica
            server = ray.get_actor(server_actor_name(rank // self.replica_world_size()))
            await server.update_weights.remote(state, kwargs.get("global_steps"))

    def replica_world_size(self) -> int:
        config = self.config
        return config.tensor_model_parallel_size * config.data_parallel_size * config.pipeline_model_parallel_size
