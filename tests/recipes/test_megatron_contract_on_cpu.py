"""What the Gemma-2 Megatron recipes rely on in verl 0.9.1 and Megatron-Bridge, checked against their source.

No GPU runs Megatron here, and Megatron-Bridge (verl 0.9.1 pins megatron-bridge==0.5.2; its wheels need
Python >= 3.12) is not installed beside verl in CI: verl's side is read from the installed package; the
Megatron-Bridge side runs only where it is installed, and was read in its 0.5.1 and 0.6.2 wheels.
"""

import importlib
import importlib.metadata
import importlib.util
import inspect

import pytest

megatron_engine = pytest.importorskip("verl.workers.engine.megatron.transformer_impl")
needs_megatron_bridge = pytest.mark.skipif(
    importlib.util.find_spec("megatron") is None or importlib.util.find_spec("megatron.bridge") is None,
    reason="Megatron-Bridge is not installed (it needs Python >= 3.12)",
)


def _engine_source() -> str:
    return inspect.getsource(megatron_engine)


def test_verl_pins_the_megatron_bridge_release_these_recipes_were_checked_against():
    requirements = importlib.metadata.requires("verl") or []
    assert any(r.replace(" ", "").startswith("megatron-bridge==0.5.2") for r in requirements), requirements


def test_verl_builds_megatron_models_from_the_hf_directory_through_megatron_bridge():
    # so the critic's model.path must be an architecture AutoBridge accepts (not *ForSequenceClassification)
    source = _engine_source()
    assert "AutoBridge.from_hf_pretrained(\n                self.model_config.local_path" in source
    assert "use_mbridge: bool = True" in inspect.getsource(importlib.import_module("verl.workers.config.engine"))


def test_verl_packs_sequences_exactly_when_the_engine_use_remove_padding_is_on():
    source = _engine_source()
    assert 'data_format = "thd" if self.engine_config.use_remove_padding else "bshd"' in source


def test_reference_model_follows_the_actors_use_remove_padding_on_megatron():
    from pathlib import Path

    import verl

    ref = Path(verl.__file__).parent / "trainer" / "config" / "ref" / "megatron_ref.yaml"
    inherited = "use_remove_padding: ${oc.select:actor_rollout_ref.actor.megatron.use_remove_padding,True}"
    assert inherited in ref.read_text()


@needs_megatron_bridge
def test_megatron_bridge_gemma2_attention_refuses_packed_sequences():
    from megatron.bridge.models.gemma.gemma2_provider import Gemma2DotProductAttention

    assert "assert packed_seq_params is None" in inspect.getsource(Gemma2DotProductAttention.forward)


@needs_megatron_bridge
def test_megatron_bridge_refuses_a_sequence_classifier_and_accepts_a_causal_lm():
    from megatron.bridge.models.conversion.auto_bridge import AutoBridge
    from transformers import Gemma2Config

    assert not AutoBridge.supports(Gemma2Config(architectures=["Gemma2ForSequenceClassification"]))
    assert AutoBridge.supports(Gemma2Config(architectures=["Gemma2ForCausalLM"]))
