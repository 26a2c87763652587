"""W&B: credentials never logged; non-zero ranks and disabled logging get a run object that does nothing."""

from __future__ import annotations

from med42_train.config import load_config
from med42_train.runtime.wandb_run import NullRun, group_name, redact, start_run, wandb_mode


def test_redact_drops_credential_like_keys_at_any_depth():
    config = {"a": 1, "hf_token": "x", "nested": {"WANDB_API_KEY": "y", "password": "z", "keep": [{"secret": 1}]}}
    assert redact(config) == {"a": 1, "nested": {"keep": [{}]}}


def test_non_zero_ranks_get_a_null_run(monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "1")
    run = start_run(load_config([f"run_dir={tmp_path}"]), "sft")
    assert isinstance(run, NullRun)
    run.log({"train/loss": 1.0})
    run.finish()
    assert not (tmp_path / "wandb").exists()


def test_env_mode_wins_and_disabled_means_no_run(monkeypatch, tmp_path):
    cfg = load_config([f"run_dir={tmp_path}"])
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(cfg) == "disabled" and isinstance(start_run(cfg, "data"), NullRun)


def test_every_stage_of_a_run_dir_shares_one_group(tmp_path):
    first, second = load_config([f"run_dir={tmp_path}"]), load_config([f"run_dir={tmp_path}", "sft.max_steps=3"])
    assert group_name(first) == group_name(second) != group_name(load_config([f"run_dir={tmp_path}/other"]))


def test_the_stage_keeps_one_run_id_across_restarts(tmp_path):
    from med42_train.runtime.wandb_run import RUN_ID_FILE, stage_run_id

    first = stage_run_id(tmp_path / "sft")
    assert first == stage_run_id(tmp_path / "sft") == (tmp_path / "sft" / RUN_ID_FILE).read_text()
    assert len(first) == 8 and first.isalnum() and stage_run_id(tmp_path / "dpo") != first
