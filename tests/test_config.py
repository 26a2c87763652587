"""Config composition: every experiment composes and validates; bad overrides fail early, naming key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from med42_train.config import (
    CONFIG_DIR, ConfigError, dpo_gradient_accumulation, load_config, sft_gradient_accumulation, stage_config_hash,
)

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def test_the_three_reproductions_exist():
    assert {"demo", "med42_v2_8b", "med42_v2_70b"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment):
    cfg = load_config([f"experiment={experiment}"])
    assert cfg.name == experiment
    assert Path(cfg.run_dir).is_absolute() and cfg.run_dir.endswith(f"runs/{experiment}")
    assert cfg.fsdp.version == 2


def test_paper_numbers_reach_the_8b_and_70b_experiments():
    cfg8, cfg70 = load_config(["experiment=med42_v2_8b"]), load_config(["experiment=med42_v2_70b"])
    for cfg in (cfg8, cfg70):
        assert (cfg.sft.learning_rate, cfg.sft.adam_beta1, cfg.sft.adam_beta2) == (5e-6, 0.9, 0.95)
        assert (cfg.sft.weight_decay, cfg.sft.num_train_epochs, cfg.data.max_length) == (0.01, 2, 8192)
        assert (cfg.dpo.learning_rate, cfg.dpo.optim, cfg.dpo.weight_decay) == (1e-6, "rmsprop", 0.0)
        assert cfg.model.dtype == "bfloat16"
    assert cfg8.dpo.beta == 0.1 and cfg70.dpo.beta == 0.01
    assert cfg8.launcher.nnodes * cfg8.launcher.nproc_per_node == 16
    assert cfg70.launcher.nnodes * cfg70.launcher.nproc_per_node == 48
    assert cfg8.model.name_or_path.endswith("Meta-Llama-3-8B-Instruct")
    # paper: 262,144 tokens per step for 8B, 393,216 for 70B, in 8,192-token rows
    assert (cfg8.sft.tokens_per_step, cfg70.sft.tokens_per_step) == (262144, 393216)
    assert sft_gradient_accumulation(cfg8, 16) == 2 and sft_gradient_accumulation(cfg70, 48) == 1


def test_paper_dpo_settings_reach_the_8b_and_70b_experiments():
    cfg8, cfg70 = load_config(["experiment=med42_v2_8b"]), load_config(["experiment=med42_v2_70b"])
    for cfg in (cfg8, cfg70):
        assert (cfg.dpo.iterations, cfg.dpo.num_train_epochs, cfg.data.preference_max_length) == (3, 1, 4096)
        assert (cfg.dpo.lr_scheduler_type, cfg.dpo.reference_model) == ("cosine", "previous")
    # paper: DPO batch 256 pairs on 2 nodes (8B), 128 pairs on 4 nodes (70B)
    assert (cfg8.dpo.pairs_per_step, cfg70.dpo.pairs_per_step, cfg70.dpo.nnodes) == (256, 128, 4)
    assert dpo_gradient_accumulation(cfg8, 16) == 8 and dpo_gradient_accumulation(cfg70, 32) == 4
    with pytest.raises(ConfigError, match=r"dpo.pairs_per_step=128, which do not split evenly over 48 ranks"):
        dpo_gradient_accumulation(cfg70, 48)  # the SFT's 6 nodes


@pytest.mark.parametrize("override, message", [
    ("dpo.loss_type=dpo_v2", "not one of TRL's DPO losses"),
    ("dpo.reference=cached", "use precomputed or live"),
    ("dpo.reference_model=base", "use previous"),
    ("dpo.iterations=0", "at least one DPO iteration"),
])
def test_bad_dpo_settings_fail_at_composition(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config([override])


def test_a_dpo_round_keeps_its_identity_when_iterations_are_added():
    two, three = load_config(["dpo.iterations=2"]), load_config(["dpo.iterations=3"])
    assert stage_config_hash(two, "dpo/iter_1") == stage_config_hash(three, "dpo/iter_1")
    assert stage_config_hash(two, "dpo") != stage_config_hash(three, "dpo")
    assert stage_config_hash(two, "dpo/iter_1") != stage_config_hash(load_config(["dpo.beta=0.2"]), "dpo/iter_1")


@pytest.mark.parametrize("world_size, micro_batch_rows, expected", [(1, 1, 32), (16, 1, 2), (16, 2, 1), (4, 8, 1)])
def test_gradient_accumulation_is_derived_from_tokens_per_step_and_world_size(world_size, micro_batch_rows,
                                                                               expected):
    cfg = load_config(["experiment=med42_v2_8b", "launcher.nnodes=1", "launcher.nproc_per_node=1",
                       f"sft.per_device_train_batch_size={micro_batch_rows}"])
    assert sft_gradient_accumulation(cfg, world_size) == expected  # 262,144 / 8,192 = 32 rows per step


@pytest.mark.parametrize("override, world_size, message", [
    ("sft.tokens_per_step=100000", 16, "not a whole number of data.max_length=8192 rows"),
    ("sft.per_device_train_batch_size=3", 16, r"do not split evenly over 16 ranks"),
])
def test_a_batch_that_does_not_split_is_refused_naming_the_fix(override, world_size, message):
    cfg = load_config(["experiment=med42_v2_8b", override])
    with pytest.raises(ConfigError, match=message):
        sft_gradient_accumulation(cfg, world_size)


def test_the_pipeline_checks_the_batch_against_the_launcher_world_size_before_any_stage(tmp_path):
    from med42_train.launch import local

    cfg = load_config([f"run_dir={tmp_path}", "launcher.nproc_per_node=3"])  # 8 rows of 512 over 3 x 4 rows
    with pytest.raises(ConfigError, match="do not split evenly over 3 ranks"):
        local.run(cfg, [])
    assert not (tmp_path / "data").exists()


def test_overrides_reach_the_config_and_run_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(["run_dir=rel/run", "sft.learning_rate=1e-4", "launcher.nproc_per_node=1"])
    assert cfg.run_dir == str(tmp_path / "rel" / "run")
    assert cfg.sft.learning_rate == 1e-4 and cfg.launcher.nproc_per_node == 1


@pytest.mark.parametrize(
    "override, expected_words",
    [
        ("sft.learning_rate=abc", ["sft.learning_rate", "Float"]),
        ("sft.learning_rat=1", ["sft.learning_rat", "spelling"]),
        ("+sft.new_key=1", ["new_key"]),
        ("experiment=nope", ["experiment/nope", "med42_v2_8b"]),
        ("model.attn_implementation=flex_attention", ["sft.packing", "flex_attention", "sdpa"]),
        ("fsdp.version=1", ["fsdp.version=2"]),
        ("logger.mode=loud", ["logger.mode"]),
        ("eval.models=[base,teacher]", ["eval.models"]),
        ("eval.tasks=[med42_medqa]", ["eval.tasks", "med42_medqa_full", "med42_medqa_letter"]),
        ("eval.data_files.medqa=/no/such/file.jsonl", ["eval.data_files.medqa", "/no/such/file.jsonl"]),
        ("eval.data_files.medqz=/tmp", ["eval.data_files.medqz", "spelling"]),
        ("eval.tasks=[med42_usmle_full]", ["med42_usmle_full", "eval.data_files.usmle"]),
        ("eval.backend=tgi", ["eval.backend", "hf or vllm"]),
        ("eval.num_fewshot=5", ["eval.num_fewshot=0"]),
        ("data.recipe=missing_recipe", ["data.recipe", "demo"]),
        ("data.max_length=4096", ["data.max_length", "max_position_embeddings"]),
        ("model.dtype=float8", ["model.dtype"]),
    ],
)
def test_bad_overrides_fail_before_any_model_loads_naming_the_key(override, expected_words):
    with pytest.raises(ConfigError) as caught:
        load_config([override])
    for word in expected_words:
        assert word in str(caught.value)


def test_stage_hash_tracks_only_the_sections_a_stage_depends_on():
    base = load_config([])
    assert stage_config_hash(load_config(["logger.project=other"]), "sft") == stage_config_hash(base, "sft")
    assert stage_config_hash(load_config(["eval.limit=3"]), "sft") == stage_config_hash(base, "sft")
    assert stage_config_hash(load_config(["sft.learning_rate=1e-4"]), "sft") != stage_config_hash(base, "sft")
    assert stage_config_hash(load_config(["sft.learning_rate=1e-4"]), "data") == stage_config_hash(base, "data")


def test_the_data_stage_hash_ignores_where_its_cache_lives_and_its_batch_size(tmp_path):
    here = load_config([f"run_dir={tmp_path / 'a'}"])
    moved = load_config([f"run_dir={tmp_path / 'b'}", "data.tokenize_batch_size=64"])
    assert here.data.cache_dir != moved.data.cache_dir
    assert stage_config_hash(here, "data") == stage_config_hash(moved, "data")
    other = load_config([f"run_dir={tmp_path / 'a'}", "data.max_length=256"])
    assert stage_config_hash(other, "data") != stage_config_hash(here, "data")


def test_a_frozen_config_is_read_as_it_is_plus_the_jobs_own_overrides(tmp_path):
    from omegaconf import OmegaConf

    from med42_train.config import load_frozen_config

    cfg = load_config([f"run_dir={tmp_path}", "dpo.iterations=3", "sft.learning_rate=3e-5"])
    frozen = tmp_path / "config.yaml"
    frozen.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    job = load_frozen_config(frozen, ["dpo.until_iteration=2"])
    assert job.sft.learning_rate == 3e-5 and job.dpo.until_iteration == 2
    with pytest.raises(ConfigError, match="dpo.until_iteration=4"):
        load_frozen_config(frozen, ["dpo.until_iteration=4"])
    with pytest.raises(ConfigError, match="frozen config"):
        load_frozen_config(frozen, ["sft.no_such_key=1"])


def test_until_iteration_does_not_change_what_a_dpo_round_is(tmp_path):
    whole = load_config([f"run_dir={tmp_path}", "dpo.iterations=3"])
    first = load_config([f"run_dir={tmp_path}", "dpo.iterations=3", "dpo.until_iteration=1"])
    for stage in ("dpo", "dpo/iter_1"):
        assert stage_config_hash(whole, stage) == stage_config_hash(first, stage)


def test_the_eval_tasks_of_every_experiment_are_checked_when_the_config_loads():
    """The paper's suite is known at composition: a typo fails here, not after data, SFT and DPO have run."""
    cfg = load_config(["experiment=med42_v2_8b"])
    assert "med42_medqa_full" in cfg.eval.tasks and cfg.eval.num_fewshot == 0
    with pytest.raises(ConfigError, match="med42_medqa_ful"):
        load_config(["experiment=med42_v2_8b", "eval.tasks=[med42_medqa_ful]"])


def test_eval_models_take_local_folders_and_the_eval_cache_is_output_neutral(tmp_path):
    folder = tmp_path / "Llama3-Med42-8B"
    folder.mkdir()
    cfg = load_config([f"eval.models=[base,{folder}]"])
    assert list(cfg.eval.models) == ["base", str(folder)]
    moved = load_config([f"eval.models=[base,{folder}]", f"eval.cache_dir={tmp_path / 'cache'}"])
    assert stage_config_hash(moved, "eval") == stage_config_hash(cfg, "eval")
    assert stage_config_hash(load_config(["eval.tasks=[med42_demo_mcqa_letter]"]), "eval") != \
        stage_config_hash(load_config([]), "eval")


@pytest.mark.parametrize("size, expected", [("5GB", 5_000_000_000), ("500MB", 500_000_000), ("4GiB", 4 * 2**30)])
def test_shard_sizes_parse_with_decimal_and_binary_units(size, expected):
    from med42_train.config import size_in_bytes

    assert size_in_bytes(size) == expected
    assert load_config([f"export.max_shard_size={size}"]).export.max_shard_size == size


def test_no_module_imports_a_private_module_of_a_library():
    import re

    package = Path(__file__).resolve().parents[1] / "med42_train"
    private = re.compile(r"^\s*(from|import)\s+(huggingface_hub|transformers|trl|accelerate|datasets)\S*\._\w+",
                         re.MULTILINE)
    offenders = [str(path) for path in package.rglob("*.py") if private.search(path.read_text())]
    assert offenders == []


def test_the_generation_config_belongs_to_the_chat_format():
    from med42_train.models import chat, demo

    assert demo.generation_config is chat.generation_config  # the demo model reuses it, exports import it
