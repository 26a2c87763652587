"""`med42 doctor`: one line per check, ok/warn/fail with the fix, credentials never shown."""

from __future__ import annotations

import re

import pytest

from med42_train import doctor
from med42_train.config import load_config

SECRET = "hf_do_not_print_0123456789"


def test_every_line_says_ok_warn_or_fail_and_secrets_stay_hidden(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    code = doctor.run_doctor([f"run_dir={tmp_path}"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["torch", "gpus", "disk", "credentials", "slurm", "attention"]
    assert all(re.match(r"^(ok|warn|fail) ", line) for line in lines)
    assert SECRET not in "\n".join(lines) and "hub token found, W&B key found" in "\n".join(lines)
    assert code == (1 if any(line.startswith("fail") for line in lines) else 0)


def test_checkpoint_disk_need_follows_the_model_size():
    cfg = load_config(["experiment=med42_v2_8b"])
    num_params = 8_030_261_248  # Llama 3 8B, from its shapes (doctor._LLAMA3_SHAPES)
    weight_bytes = 2  # bfloat16
    per_checkpoint = num_params * (weight_bytes + 8)  # + fp32 AdamW moments
    expected = per_checkpoint * (cfg.sft.save_total_limit + cfg.dpo.save_total_limit) + \
        num_params * weight_bytes * (1 + cfg.dpo.iterations)
    assert doctor.checkpoint_bytes(cfg, num_params) == expected


def test_llama3_shapes_give_the_published_parameter_counts():
    counts = {}
    for name in ("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Meta-Llama-3-70B-Instruct"):
        cfg = load_config([f"model.name_or_path={name}", "model.attn_implementation=sdpa"])
        counts[name] = doctor._num_params(cfg)
    # Meta's model cards: 8.03 B and 70.6 B parameters.
    assert counts["meta-llama/Meta-Llama-3-8B-Instruct"] == pytest.approx(8.03e9, rel=1e-3)
    assert counts["meta-llama/Meta-Llama-3-70B-Instruct"] == pytest.approx(70.55e9, rel=1e-3)


def test_slurm_missing_fails_only_when_the_launcher_needs_it(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    assert doctor._slurm(load_config(["launcher=slurm"]))[0] == "fail"
    assert doctor._slurm(load_config([]))[0] == "warn"
