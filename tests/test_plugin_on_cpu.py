"""The verl plugin: discovered by `import verl`, idempotent, loud on failure, light to import."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlsf_verl import plugin


def run_python(code: str, folder, extra_modules: str = "", **env_vars: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **env_vars)
    env[plugin.EXTRA_MODULES_ENV] = extra_modules
    env.pop(plugin.LOG_LEVEL_ENV, None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


# Fresh interpreters, one per check: each imports verl once with its own environment (the plugin
# registers at `import verl`). name -> (files to write beside it, code, extra modules, environment).
FRESH_PROCESSES = {
    "import_verl_alone": (
        {
            "user_rewards.py": "from rlsf_verl.rewards import register_reward_function\n"
            "@register_reward_function('user_constant')\n"
            "def constant(**kwargs):\n    return 1.0\n"
        },
        """
        import json, sys
        import verl
        plugin = sys.modules["rlsf_verl.plugin"]
        print(json.dumps({"registered": plugin.register() is plugin.register(),
                          "functions": plugin.register().reward_functions}))
        """,
        "user_rewards",
        {},
    ),
    "our_engine": (
        {},
        """
        import json, sys
        import verl
        from verl.workers.engine.base import EngineRegistry
        engine = EngineRegistry.get_engine_cls("language_model", "fsdp")
        print(json.dumps({"engine": f"{engine.__module__}.{engine.__name__}",
                          "engines": sys.modules["rlsf_verl.plugin"].register().engines}))
        """,
        "",
        {"VERL_ENGINE_VENDOR": "rlsf", "VERL_ENGINE_DEVICE": "cuda"},
    ),
    "broken_registration": (
        {"broken_signals.py": "raise RuntimeError('deliberately broken registration')\n"},
        """
        import sys
        import verl  # verl swallows plugin errors at DEBUG level; ours must still be visible
        plugin = sys.modules.get("rlsf_verl.plugin")
        print("plugin loaded:", plugin is not None and plugin._registration is not None)
        """,
        "broken_signals",
        {},
    ),
    "core_only": (
        {},
        """
        import sys
        import rlsf_verl, rlsf_verl.signals, rlsf_verl.answers, rlsf_verl.compat, rlsf_verl.errors
        heavy = sorted(m for m in ("verl", "ray", "transformers", "trl", "datasets") if m in sys.modules)
        print(",".join(heavy) or "none")
        """,
        "",
        {},
    ),
}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """name -> the finished process of each FRESH_PROCESSES check, all started at once: most of their
    time is importing verl, one core each."""

    def start(name):
        files, code, extra_modules, env_vars = FRESH_PROCESSES[name]
        folder = tmp_path_factory.mktemp(name)
        for file, text in files.items():
            (folder / file).write_text(text)
        return run_python(code, folder, extra_modules, **env_vars)

    with ThreadPoolExecutor(max_workers=len(FRESH_PROCESSES)) as pool:
        return dict(zip(FRESH_PROCESSES, pool.map(start, FRESH_PROCESSES), strict=True))


def test_import_verl_alone_registers_the_plugin_and_logs_one_line(fresh):
    result = fresh["import_verl_alone"]
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["registered"] is True
    assert "user_constant" in report["functions"] and "rlvr_math" in report["functions"]
    lines = [line for line in result.stderr.splitlines() if line.startswith("[rlsf-verl]")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("[rlsf-verl] INFO rlsf-verl registered with verl 0.9.1")
    assert "extra modules user_rewards" in lines[0]


def test_workers_told_to_use_our_engine_register_it_on_import_verl(fresh):
    result = fresh["our_engine"]
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["engine"] == "rlsf_verl.engines.fsdp.RLIFFSDPEngine"
    megatron = ["rlsf_verl.engines.megatron.RLIFMegatronEngine"] if importlib.util.find_spec("megatron") else []
    assert report["engines"] == ["rlsf_verl.engines.fsdp.RLIFFSDPEngine", *megatron]


def test_broken_registration_is_reported_not_swallowed(fresh):
    result = fresh["broken_registration"]
    assert result.returncode == 0, result.stderr
    assert "plugin loaded: False" in result.stdout
    assert "[rlsf-verl] ERROR registration with verl failed" in result.stderr
    assert "broken_signals" in result.stderr
    assert "RuntimeError: deliberately broken registration" in result.stderr


def test_importing_the_core_stays_light(fresh):
    result = fresh["core_only"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"


def test_register_is_idempotent():
    first = plugin.register()
    assert plugin.register() is first


def test_extra_modules_env_is_split_on_commas(monkeypatch):
    monkeypatch.setenv(plugin.EXTRA_MODULES_ENV, " a.b , ,c ")
    assert plugin.extra_modules() == ("a.b", "c")


def test_import_extra_modules_imports_the_listed_modules_then_the_also_modules(monkeypatch, tmp_path):
    for name in ("plugin_test_listed", "plugin_test_also"):
        (tmp_path / f"{name}.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugin.EXTRA_MODULES_ENV, "plugin_test_listed")
    assert plugin.import_extra_modules(also=["plugin_test_also"]) == ["plugin_test_listed", "plugin_test_also"]
    assert {"plugin_test_listed", "plugin_test_also"} <= set(sys.modules)


def test_import_extra_modules_names_a_missing_module_and_the_pythonpath_fix(monkeypatch):
    monkeypatch.setenv(plugin.EXTRA_MODULES_ENV, "no_such_user_module")
    with pytest.raises(ModuleNotFoundError) as raised:
        plugin.import_extra_modules()
    assert str(raised.value) == (
        "module 'no_such_user_module': No module named 'no_such_user_module'; put its folder on PYTHONPATH"
    )


def test_import_extra_modules_leaves_a_missing_import_inside_a_module_as_it_is(monkeypatch, tmp_path):
    (tmp_path / "plugin_test_needs_missing.py").write_text("import no_such_dependency_of_the_user\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugin.EXTRA_MODULES_ENV, "")
    with pytest.raises(ModuleNotFoundError) as raised:
        plugin.import_extra_modules(also=["plugin_test_needs_missing"])
    assert str(raised.value) == "No module named 'no_such_dependency_of_the_user'"


def test_config_overlays_are_the_yaml_files_of_the_config_package(monkeypatch, tmp_path):
    (tmp_path / "rlsf_reward").mkdir()
    (tmp_path / "__pycache__").mkdir()
    for name in ("rlif_grpo.yaml", "rlsf_ppo.yaml", "README.md", "rlsf_reward/majority.yaml", "__pycache__/x.yaml"):
        (tmp_path / name).write_text("")
    monkeypatch.setattr(plugin.resources, "files", lambda package: tmp_path)
    assert plugin.config_overlays() == ("rlif_grpo", "rlsf_ppo", "rlsf_reward/majority")


def test_shipped_overlays_include_every_reward_option():
    overlays = plugin.config_overlays()
    assert "rlsf_trainer" in overlays
    assert {"rlsf_reward/rlvr_math", "rlsf_reward/self_confidence", "rlsf_reward/rlsf_rm"} <= set(overlays)


def test_registration_description_counts_each_kind():
    registration = plugin.Registration(("m",), ("f", "g"), ("s", "t", "u"), (), ("o",), ())
    described = registration.describe()
    assert "1 reward managers, 2 reward functions, 3 signals, 0 engines, 1 config overlays" in described


@pytest.mark.parametrize("name", ["entropy", "self_certainty"])
def test_unknown_reward_function_suggests_the_closest(name):
    from rlsf_verl.rewards import REWARD_FUNCTIONS, get_reward_function, register_reward_function

    try:
        register_reward_function(name)(lambda **kwargs: 0.0)
        with pytest.raises(ValueError, match=f"did you mean '{name}'"):
            get_reward_function(name + "x")
    finally:
        REWARD_FUNCTIONS.pop(name, None)
