"""verl's FSDP engines, able to build their models on CPU; registered for device ``cpu``.

Two verl 0.9.1 builders assume an accelerator:

- every forward-only FSDP2 module (the reference model of a KL term) gets
  ``CPUOffloadPolicy(pin_memory=True)`` (``verl/workers/engine/fsdp/transformer_impl.py:459-462``),
  and pinning memory needs an accelerator. On CPU there is nothing to offload to:
  :class:`CPUFSDPBuild` wraps forward-only modules as it wraps trained ones.
- every value model is loaded with ``attn_implementation="flash_attention_2"``
  (``verl/utils/model.py:649``), which CPU torch cannot run; the fallback is trl's
  ``AutoModelForCausalLMWithValueHead``, which trl 1.x no longer has. verl's language-model branch of
  the same builder loads the class the config's architecture names, with the configured attention
  (``critic.model.override_config.attn_implementation=sdpa``). :class:`CPUValueEngine` names the
  model's token-classification class (one label, no dropout: what verl's value-model branch sets)
  and builds through that branch.

Loading, FSDP wrapping and the forward passes stay verl's.
"""

from __future__ import annotations

from rlsf_verl import compat
from rlsf_verl.engines.fsdp import RLIFFSDPEngine


def token_classification_architecture(hf_config) -> str:
    """The ``*ForTokenClassification`` class name transformers has for this config's model type.

    >>> from transformers import LlamaConfig
    >>> token_classification_architecture(LlamaConfig())
    'LlamaForTokenClassification'
    """
    from transformers import AutoModelForTokenClassification

    try:
        return AutoModelForTokenClassification._model_mapping[type(hf_config)].__name__
    except KeyError:
        raise ValueError(
            f"critic.model.path: transformers has no token-classification model for model_type "
            f"{hf_config.model_type!r}, so verl's critic cannot be built on CPU; use a model family that has one"
        ) from None


class CPUFSDPBuild:
    """Mixin for verl's FSDP engines: forward-only modules wrapped without verl's pinned CPU offload."""

    def _build_fsdp_module(self, module):
        forward_only = self.engine_config.forward_only
        self.engine_config.forward_only = False  # the flag's only effect in this builder is the offload policy
        try:
            return super()._build_fsdp_module(module)
        finally:
            self.engine_config.forward_only = forward_only


class CPUEngineWithLMHead(CPUFSDPBuild, compat.resolve("FSDPEngineWithLMHead")):
    """verl's FSDP language-model engine (actor, reference) on CPU."""


class CPURLIFEngine(CPUFSDPBuild, RLIFFSDPEngine):
    """rlsf-verl's RLIF engine (``VERL_ENGINE_VENDOR=rlsf``) on CPU."""


class CPUValueEngine(CPUFSDPBuild, compat.resolve("FSDPEngineWithValueHead")):
    """verl's FSDP value-model engine (critic) whose model is built as a token classifier with the
    configured attention."""

    def _build_module(self):
        model_config = self.model_config
        if model_config.model_type != "value_model":
            return super()._build_module()
        hf_config = model_config.hf_config
        hf_config.num_labels = 1
        hf_config.classifier_dropout = 0.0
        hf_config.architectures = [token_classification_architecture(hf_config)]
        model_config.model_type = "language_model"  # verl's builder branch that honours the attention setting
        try:
            return super()._build_module()
        finally:
            model_config.model_type = "value_model"
