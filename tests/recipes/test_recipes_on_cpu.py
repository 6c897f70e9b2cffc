"""The recipes do what their READMEs say: every run script, run with DRY_RUN=1 against the installed
verl, prints a config that selects the route's reward, RLIF signal and engine, takes its model and
data paths from the environment, sets no legacy key and passes rlsf-verl's and verl's checks; a
recipe's reward changes with one override; the READMEs show only commands that exist."""

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import rlsf_verl
from rlsf_verl import compat
from rlsf_verl.config_check import check_config, find_legacy_keys

sys.path.insert(0, str(Path(__file__).parents[1]))
from readme_blocks import bash_commands  # noqa: E402  (a helper in tests/)

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
# cpu_smoke/ and cpu_compare/ train for real on a CPU in their own venv (tests/e2e_cpu); the others are GPU launches
CPU_RECIPES = (RECIPES / "cpu_smoke", RECIPES / "cpu_compare")
# run_*_8gpu.sh: the pipeline and verl on one machine, dry-run tested in test_node_recipes_on_cpu.py
NODE_SCRIPTS = sorted(RECIPES.glob("*/run_*_8gpu.sh"))
SCRIPTS = sorted(p for p in RECIPES.glob("*/run_*.sh") if p.parent not in CPU_RECIPES and p not in NODE_SCRIPTS)
READMES = sorted(RECIPES.glob("**/README.md"))
# the venvs a recipe README may tell a user to make first (cpu_compare needs the pipeline's and verl's)
SETUP_SCRIPTS = (REPO / "dev" / "setup_venv.sh", RECIPES / "cpu_smoke" / "setup_venv.sh")

# route folder -> the reward function and manager its scripts select
ROUTES = {
    "rlvr": ("rlvr_math", "naive"),
    "rlsf_rm": ("rlvr_math", "rlsf_rm"),
    "rlif": ("rlvr_math", "naive"),
    "ttrl": ("majority_vote", "naive"),
}
# the RLIF signal a script selects by default: self-certainty has an FSDP engine only
RLIF_DEFAULT_SIGNAL = {"fsdp": "self_certainty", "megatron": "neg_entropy"}

RLIF_GRPO = RECIPES / "rlif" / "run_qwen2.5_3b_grpo_fsdp.sh"
RLIF_MEGATRON = RECIPES / "rlif" / "run_qwen2.5_3b_grpo_megatron.sh"
RLVR_GRPO = RECIPES / "rlvr" / "run_qwen2.5_3b_grpo_fsdp.sh"
# (name, script, extra environment, extra command-line arguments): dry runs beyond each script's own
VARIANTS = [
    ("rlif_to_rlvr", RLIF_GRPO, {}, ["~rlsf_rlif"]),
    ("rlvr_to_rlif", RLVR_GRPO, {}, ["rlsf_rlif=neg_trajectory_entropy"]),
    ("self_certainty_on_megatron", RLIF_MEGATRON, {"SIGNAL": "self_certainty"}, []),
    (  # recipes/rlsf_rm/README.md: the self-confidence scorer served by verl on the GPUs
        "self_confidence_served",
        RECIPES / "rlvr" / "run_gemma2_2b_ppo_fsdp.sh",
        {"REWARD": "self_confidence"},
        [
            "reward.self_confidence.backend=server",
            "reward.reward_model.enable=True",
            "reward.reward_model.model_path=$MODEL_PATH",  # as the shell expands it
            "reward.reward_model.rollout.name=vllm",
        ],
    ),
]


def _parts(script: Path) -> tuple[str, str, str]:
    """``(route, algorithm, backend)`` of ``recipes/<route>/run_<model>_<algorithm>_<backend>.sh``."""
    *_, algorithm, backend = script.stem.split("_")
    return script.parent.name, algorithm, backend


def _yaml_config(stdout: str):
    """The config ``--cfg job`` printed: stdout from its first top-level key on."""
    match = re.search(r"^[A-Za-z_]\w*:", stdout, flags=re.M)
    assert match, f"no YAML in the output:\n{stdout[-2000:]}"
    return OmegaConf.create(stdout[match.start() :])


@pytest.fixture(scope="module")
def paths(tmp_path_factory, tiny_model_dir) -> dict[str, str]:
    """The environment every dry run gets: a real (tiny) model for verl's checks, an RM path distinct from it."""
    root = tmp_path_factory.mktemp("recipes")
    reward_model = root / "reward-model"
    reward_model.symlink_to(tiny_model_dir, target_is_directory=True)
    return {
        "MODEL_PATH": str(tiny_model_dir),
        "RM_PATH": str(reward_model),
        "TRAIN_FILES": str(root / "data" / "train.parquet"),
        "VAL_FILES": str(root / "data" / "test.parquet"),
        "OUTPUT_DIR": str(root / "out"),
    }


@pytest.fixture(scope="module")
def dry_runs(paths, tmp_path_factory) -> dict:
    """Every script, then every variant, run with DRY_RUN=1, two at a time: ``{script or name: config}``."""
    # python3 must be the interpreter running the tests (CI's .venv or a local one) and see this rlsf_verl
    package_root = str(Path(rlsf_verl.__file__).resolve().parents[1])
    base_env = {
        **os.environ,
        **paths,
        "DRY_RUN": "1",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        "HYDRA_FULL_ERROR": "1",
    }
    jobs = [(script, script, {}, []) for script in SCRIPTS] + VARIANTS

    def dry_run(job):
        key, script, env, args = job
        args = [arg.replace("$MODEL_PATH", paths["MODEL_PATH"]) for arg in args]
        cwd = tmp_path_factory.mktemp("cwd")  # Hydra writes outputs/ into the working directory
        result = subprocess.run(
            ["bash", str(script), *args],
            env={**base_env, **env},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{script.name} {args}: exit {result.returncode}\n{result.stderr[-3000:]}"
        return key, _yaml_config(result.stdout)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(dry_run, jobs))


def test_every_recipe_folder_has_a_readme_and_every_script_folder_is_a_known_route():
    assert {p.parent.name for p in SCRIPTS} == set(ROUTES)
    assert {p.parent for p in READMES} == {RECIPES, *(p for p in RECIPES.iterdir() if p.is_dir())}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_selects_its_route_reward_signal_and_engine(dry_runs, script):
    config = dry_runs[script]
    route, algorithm, backend = _parts(script)
    function, manager = ROUTES[route]
    assert config.reward.custom_reward_function.path == "pkg://rlsf_verl.rewards"
    assert config.reward.custom_reward_function.name == function
    assert config.reward.reward_manager.name == manager
    assert config.algorithm.adv_estimator == {"ppo": "gae", "grpo": "grpo"}[algorithm]
    assert config.actor_rollout_ref.actor.strategy == {"fsdp": "fsdp", "megatron": "megatron"}[backend]
    signal = RLIF_DEFAULT_SIGNAL[backend] if route == "rlif" else None
    assert config.rlsf.rlif.signal == signal
    env_vars = config.ray_kwargs.ray_init.runtime_env.env_vars
    assert env_vars.get("RLSF_VERL_RLIF_SIGNAL") == (signal if signal == "self_certainty" else None)
    assert "VERL_ENGINE_VENDOR" not in env_vars  # rlsf-verl's trainer sets it in its actor workers only
    assert config.rlsf.group.majority_vote == (route == "ttrl")
    if route == "ttrl":  # the vote reads answers with the function's kind and compares them with the group step's
        assert config.reward.custom_reward_function.reward_kwargs.kind == config.rlsf.group.answer_kind == "math"
    assert config.reward.reward_model.enable == (route == "rlsf_rm")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_takes_model_data_and_output_paths_from_the_environment(dry_runs, paths, script):
    config = dry_runs[script]
    route, algorithm, backend = _parts(script)
    assert config.actor_rollout_ref.model.path == paths["MODEL_PATH"]
    assert config.data.train_files == paths["TRAIN_FILES"]
    assert config.data.val_files == paths["VAL_FILES"]
    if route == "rlsf_rm":
        assert config.reward.reward_model.model_path == paths["RM_PATH"]
    if algorithm == "ppo":  # the paper's value head starts from the RM (FSDP); elsewhere from the policy
        from_rm = route == "rlsf_rm" and backend == "fsdp"
        assert config.critic.model.path == paths["RM_PATH" if from_rm else "MODEL_PATH"]
    out = paths["OUTPUT_DIR"]
    assert list(config.trainer.logger) == ["console", "file"]
    assert config.trainer.validation_data_dir == f"{out}/validation"
    assert config.trainer.default_local_dir == f"{out}/checkpoints"
    assert config.ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH == f"{out}/metrics.jsonl"
    assert config.trainer.project_name == "rlsf-verl"
    assert script.stem.removeprefix("run_") in config.trainer.experiment_name


@pytest.mark.filterwarnings("ignore:Disabled critic")  # verl's note for GRPO, which needs none
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_script_sets_no_legacy_key_and_passes_rlsf_verl_and_verl_checks(dry_runs, script):
    config = dry_runs[script]
    assert find_legacy_keys(config) == []
    check_config(config)  # the check the dry run already passed, run again on the parsed config
    compat.resolve("validate_config")(  # verl's own checks: batch arithmetic, config dataclasses
        config=config,
        use_reference_policy=compat.resolve("need_reference_policy")(config),
        use_critic=compat.resolve("need_critic")(config),
    )


GEMMA2_MEGATRON = [p for p in SCRIPTS if "gemma2" in p.stem and _parts(p)[2] == "megatron"]


@pytest.mark.parametrize("script", GEMMA2_MEGATRON, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_gemma2_on_megatron_trains_on_padded_not_packed_sequences(dry_runs, script):
    # verl's Megatron engine packs sequences (thd) when use_remove_padding is on, its default; Megatron-Bridge's
    # Gemma-2 attention asserts packed_seq_params is None (tests/recipes/test_megatron_contract_on_cpu.py)
    config = dry_runs[script]
    assert config.actor_rollout_ref.actor.megatron.use_remove_padding is False
    assert config.actor_rollout_ref.ref.megatron.use_remove_padding is False
    if _parts(script)[1] == "ppo":
        assert config.critic.megatron.use_remove_padding is False


@pytest.mark.parametrize("script", [p for p in SCRIPTS if _parts(p)[1:] == ("ppo", "megatron")], ids=lambda p: p.name)
def test_megatron_critic_starts_from_the_causal_lm_policy_not_a_sequence_classifier(dry_runs, paths, script):
    # Megatron-Bridge's AutoBridge builds *ForCausalLM-like architectures; the RLSF RM is *ForSequenceClassification
    assert dry_runs[script].critic.model.path == paths["MODEL_PATH"]


def test_self_confidence_example_serves_the_scorer_with_verl_and_passes_the_checks(dry_runs, paths):
    config = dry_runs["self_confidence_served"]
    assert config.reward.reward_manager.name == "self_confidence"
    assert config.reward.self_confidence.backend == "server" and config.reward.self_confidence.server_url is None
    assert config.reward.reward_model.enable and config.reward.reward_model.model_path == paths["MODEL_PATH"]
    check_config(config)


def test_experiment_names_differ_so_runs_never_share_an_output_directory(dry_runs):
    names = [dry_runs[script].trainer.experiment_name for script in SCRIPTS]
    assert len(set(names)) == len(names)


def _differing_sections(a, b) -> set[str]:
    a, b = OmegaConf.to_container(a), OmegaConf.to_container(b)
    return {key for key in a.keys() | b.keys() if a.get(key) != b.get(key)}


def test_rlif_recipe_becomes_rlvr_with_one_override(dry_runs):
    rlif, rlvr = dry_runs[RLIF_GRPO], dry_runs["rlif_to_rlvr"]
    assert rlvr.rlsf.rlif.signal is None
    assert "VERL_ENGINE_VENDOR" not in rlvr.ray_kwargs.ray_init.runtime_env.env_vars
    assert rlvr.reward.custom_reward_function.name == "rlvr_math"
    # the signal and the engine it needed are all that changed
    assert _differing_sections(rlif, rlvr) == {"rlsf", "ray_kwargs"}
    assert _differing_sections(rlif.rlsf, rlvr.rlsf) == {"rlif"}
    assert _differing_sections(rlif.rlsf.rlif, rlvr.rlsf.rlif) == {"signal"}
    check_config(rlvr)


def test_rlvr_recipe_becomes_rlif_with_one_override(dry_runs):
    rlvr, rlif = dry_runs[RLVR_GRPO], dry_runs["rlvr_to_rlif"]
    assert rlvr.rlsf.rlif.signal is None
    assert rlif.rlsf.rlif.signal == "neg_trajectory_entropy"
    assert _differing_sections(rlvr, rlif) == {"rlsf"}
    check_config(rlif)


def test_self_certainty_on_megatron_selects_our_engine_and_passes_the_checks(dry_runs):
    config = dry_runs["self_certainty_on_megatron"]
    assert config.rlsf.rlif.signal == "self_certainty"
    env_vars = config.ray_kwargs.ray_init.runtime_env.env_vars
    assert env_vars.RLSF_VERL_RLIF_SIGNAL == "self_certainty" and "VERL_ENGINE_VENDOR" not in env_vars
    check_config(config)


# ---- the READMEs' commands -------------------------------------------------------------------------------


COMMAND_WORDS = ("bash", "rlsf-verl", "python3", "python")


def _words(command: str) -> list[str]:
    """The shell words of ``command`` without comments and leading ``NAME=value`` assignments; none
    for an ``export`` of settings."""
    words = shlex.split(command, comments=True)
    if words[:1] == ["export"]:
        return []
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        words.pop(0)
    return words


def _readme_commands() -> list[tuple[Path, list[str]]]:
    """``(readme, words)`` for every command of a ```bash block and every inline code span of a table
    row that starts with a command."""
    commands = []
    for readme in READMES:
        text = readme.read_text(encoding="utf-8")
        commands += [(readme, words) for command in bash_commands(text) if (words := _words(command))]
        for row in re.findall(r"^\|.*$", text, flags=re.M):
            spans = [_words(span) for span in re.findall(r"`([^`]+)`", row)]
            commands += [(readme, words) for words in spans if words and words[0] in COMMAND_WORDS]
    return commands


README_COMMANDS = _readme_commands()


def test_readmes_show_commands():
    assert {readme.parent.name for readme, _ in README_COMMANDS} >= set(ROUTES) | {"rlsf_dpo"}


@pytest.mark.parametrize(
    ("readme", "words"), README_COMMANDS, ids=[f"{r.parent.name}:{' '.join(w)[:60]}" for r, w in README_COMMANDS]
)
def test_readme_command_is_a_recipe_script_an_rlsf_verl_command_or_a_python_module(readme, words):
    from rlsf_verl.cli import build_parser

    command = " ".join(words)
    if words[0] == "bash":
        script = (REPO / words[1]).resolve()
        assert (
            script in SCRIPTS
            or script in NODE_SCRIPTS
            or (script.parent in CPU_RECIPES and script.is_file())
            or script in SETUP_SCRIPTS
        ), f"{readme}: {words[1]} is not a recipe script or a venv set-up script"
    elif words[0] == "rlsf-verl":
        try:
            args = build_parser().parse_args(words[1:])
        except SystemExit:
            pytest.fail(f"{readme}: `{command}` does not parse as an rlsf-verl command")
        if args.command == "run":  # each key=value must name a PipelineConfig field
            from rlsf_verl.pipeline.runner import PipelineConfig

            OmegaConf.merge(OmegaConf.structured(PipelineConfig), OmegaConf.from_dotlist(args.overrides))
    elif words[:2] in (["python3", "-m"], ["python", "-m"]):
        assert importlib.util.find_spec(words[2]) is not None, f"{readme}: no module {words[2]}"
    else:
        pytest.fail(f"{readme}: `{command}` is neither `bash recipes/...`, `rlsf-verl ...` nor `python3 -m ...`")


def test_every_script_is_shown_in_its_routes_readme():
    for script in SCRIPTS:
        shown = {words[1] for readme, words in README_COMMANDS if readme.parent == script.parent and words[0] == "bash"}
        assert str(script.relative_to(REPO)) in shown, f"{script.name} is missing from {script.parent.name}/README.md"
