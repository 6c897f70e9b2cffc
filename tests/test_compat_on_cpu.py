"""Contract: every verl symbol in rlsf_verl.compat resolves against the installed verl."""

import inspect

import pytest

from rlsf_verl import compat


def test_installed_verl_is_the_pinned_release():
    assert compat.installed_verl_version() == compat.PINNED_VERL_VERSION
    compat.check_verl_version()


@pytest.mark.parametrize("name", sorted(compat.SYMBOLS))
def test_symbol_resolves_in_installed_verl(name):
    assert compat.resolve(name) is not None


def test_reward_manager_contract_matches_what_our_managers_implement():
    base = compat.RewardManagerBase
    params = inspect.signature(base.__init__).parameters
    assert list(params)[1:4] == ["config", "tokenizer", "compute_score"]
    assert inspect.iscoroutinefunction(base.run_single)
    assert isinstance(compat.REWARD_MANAGER_REGISTRY, dict)


def test_engine_registry_contract_takes_vendor_and_lists_engines():
    params = inspect.signature(compat.EngineRegistry.register).parameters
    assert {"model_type", "backend", "device", "vendor"} <= set(params)
    import verl.workers.engine  # noqa: F401  (imports verl's own engines into the registry)

    assert compat.registered_engine_classes(), "verl registered no engine: EngineRegistry layout changed?"


# sha256 of verl 0.9.1's TaskRunnerV1.run, which rlsf_verl.trainer.ppo_trainer.RLSFTaskRunner.run follows
TASK_RUNNER_RUN_SHA256 = "26be986901db888bb7ccbec7a7b8eb90365de42a426e6fbf119e6e8d445dde7c"


def test_task_runner_run_is_the_one_our_runner_follows():
    import hashlib

    source = inspect.getsource(compat.resolve("TaskRunnerV1").__ray_actor_class__.run)
    assert hashlib.sha256(source.encode()).hexdigest() == TASK_RUNNER_RUN_SHA256, (
        "verl's TaskRunnerV1.run changed: update RLSFTaskRunner.run to match, then this hash"
    )


def test_trainer_and_runner_contract():
    trainer = compat.resolve("PPOTrainerSync")
    assert list(inspect.signature(trainer._compute_advantage).parameters) == ["self", "batch", "metrics"]
    assert list(inspect.signature(compat.resolve("run_ppo")).parameters) == ["config", "task_runner_class"]
    assert isinstance(
        inspect.getattr_static(compat.resolve("RewardLoopManager"), "reward_loop_worker_handles"), property
    )
    assert callable(compat.resolve("tensordict_utils").get_tensordict)


def test_adv_estimator_registry_is_a_decorator_factory():
    assert callable(compat.register_adv_est("rlsf_contract_probe"))


def test_moved_symbol_error_names_symbol_and_both_versions(monkeypatch):
    monkeypatch.setitem(compat.SYMBOLS, "Gone", "verl.protocol:NoSuchThing")
    with pytest.raises(compat.VerlCompatError) as err:
        compat.resolve("Gone")
    message = str(err.value)
    assert "'Gone'" in message and "verl.protocol:NoSuchThing" in message
    assert f"verl=={compat.PINNED_VERL_VERSION}" in message
    assert f"installed: {compat.installed_verl_version()}" in message


def test_unknown_symbol_name_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'EngineRegistry'"):
        compat.resolve("EngineRegistri")


def test_version_mismatch_is_an_error(monkeypatch):
    monkeypatch.setattr(compat, "installed_verl_version", lambda: "0.8.0")
    with pytest.raises(compat.VerlCompatError, match=r"needs verl==0\.9\.1, installed: 0\.8\.0"):
        compat.check_verl_version()
