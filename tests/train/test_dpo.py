"""Iterative DPO on 2 gloo processes with FSDP2: rounds chained through their exports, resumable per round."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from med42_train.runtime.preemption import FAULT_INJECTION_ENV, PREEMPTED_EXIT_CODE
from med42_train.runtime.rundir import fingerprint
from tests.conftest import run_med42
from tests.train.conftest import copy_run, dpo_losses

SHORT_DPO = ["logger.wandb=false", "dpo.max_steps=6", "dpo.save_steps=3", "dpo.logging_steps=1"]


def _manifest(run_dir, stage):
    return json.loads((run_dir / stage / "manifest.json").read_text())


def test_each_iteration_starts_from_the_previous_export_and_names_its_start_and_reference(demo_run):
    sft, first, second = (_manifest(demo_run, stage) for stage in ("sft", "dpo/iter_1", "dpo/iter_2"))
    assert first["start_model"] == {"stage": "sft", **{k: sft["outputs"]["model"][k] for k in ("path", "sha256")}}
    assert second["start_model"]["path"] == first["outputs"]["model"]["path"] == second["reference_model"]["path"]
    assert second["start_model"]["sha256"] == first["outputs"]["model"]["sha256"]
    # The round's inputs carry its predecessor's fingerprint: a redone iteration 1 makes iteration 2 stale.
    assert second["inputs"]["start"]["sha256"] == fingerprint(first)
    for k, manifest in ((1, first), (2, second)):
        assert manifest["iteration"] == k and manifest["world_size"] == 2 and manifest["fsdp_version"] == 2
        assert manifest["distributed_type"] == "DistributedType.FSDP" and manifest["figures"]["global_steps"] == 6
        assert manifest["outputs"]["model"]["validated"] and (demo_run / "dpo" / f"iter_{k}" / "COMPLETE").is_file()


def test_the_stage_manifest_lists_the_iterations_and_names_the_last_export(demo_run):
    stage = _manifest(demo_run, "dpo")
    assert [entry["iteration"] for entry in stage["outputs"]["iterations"]] == [1, 2]
    assert stage["outputs"]["model"] == _manifest(demo_run, "dpo/iter_2")["outputs"]["model"]


def test_each_iteration_trains_on_its_own_pairs(demo_run):
    from datasets import load_from_disk

    pairs = load_from_disk(str(demo_run / "data" / "preference"))
    counts = {k: sum(1 for it in pairs["iteration"] if it == k) for k in (1, 2)}
    for k in (1, 2):
        report = _manifest(demo_run, f"dpo/iter_{k}")["pairs"]
        assert report["num_pairs"] == counts[k] > 0 and report["num_kept"] == counts[k] and report["dropped"] == {}


def test_dpo_logs_preference_and_throughput_metrics(demo_run):
    history = json.loads((demo_run / "dpo" / "iter_1" / "log_history.json").read_text())
    logged = set().union(*history)
    assert {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
            "logps/rejected", "tokens_per_s", "peak_memory_gib", "grad_norm", "learning_rate"} <= logged
    # The reference is the start model: at the first step policy and reference agree, so the loss is log 2.
    assert history[0]["loss"] == pytest.approx(0.693147, abs=1e-6)
    assert history[0]["rewards/margins"] == pytest.approx(0, abs=1e-5)


def test_dpo_moved_each_policy_away_from_its_start(demo_run):
    states = [AutoModelForCausalLM.from_pretrained(str(demo_run / stage / "model")).state_dict()
              for stage in ("sft", "dpo/iter_1", "dpo/iter_2")]
    for start, trained in zip(states, states[1:]):
        assert any(not torch.equal(start[name], trained[name]) for name in start)


def test_a_sigterm_in_iteration_2_resumes_there_with_iteration_1_untouched(demo_run, tmp_path):
    run_dir = copy_run(demo_run, tmp_path)
    for name in ("COMPLETE", "manifest.json"):  # the stage is back to "iteration 2 in progress"
        (run_dir / "dpo" / name).unlink()
    import shutil

    shutil.rmtree(run_dir / "dpo" / "iter_2")
    first_complete = (run_dir / "dpo" / "iter_1" / "COMPLETE").stat().st_mtime_ns

    stopped = run_med42(["dpo", f"run_dir={run_dir}", *SHORT_DPO], nproc=2, timeout_s=600, check=False,
                        env_extra={FAULT_INJECTION_ENV: "SIGTERM@3:rank1"})
    assert stopped.returncode != 0 and f"exitcode  : {PREEMPTED_EXIT_CODE}" in stopped.stderr
    assert json.loads((run_dir / "dpo" / "iter_2" / "PREEMPTED").read_text())["global_step"] == 3
    assert not (run_dir / "dpo" / "iter_2" / "COMPLETE").exists()

    resumed = run_med42(["dpo", f"run_dir={run_dir}", *SHORT_DPO], nproc=2, timeout_s=600)
    assert "resuming from" in resumed.stdout + resumed.stderr and "checkpoint-3" in resumed.stdout + resumed.stderr
    assert (run_dir / "dpo" / "iter_1" / "COMPLETE").stat().st_mtime_ns == first_complete
    expected, after_resume = dpo_losses(demo_run, 2), dpo_losses(run_dir, 2)
    assert sorted(after_resume) == sorted(expected) == [1, 2, 3, 4, 5, 6]
    for step, loss in expected.items():  # the resumed round reproduces the uninterrupted one step by step
        assert after_resume[step] == pytest.approx(loss, rel=1e-5), f"step {step}"


# ---- DPO accepts only a validated export whose files are unchanged ----

def _fake_sft(tmp_path, **record_overrides):
    from omegaconf import OmegaConf

    from med42_train.runtime.rundir import sha256_tree

    export = tmp_path / "sft" / "model"
    export.mkdir(parents=True)
    (export / "model.safetensors").write_bytes(b"weights")
    (export / "config.json").write_text("{}")
    record = {"path": str(export), "validated": True, "sha256": sha256_tree(export), **record_overrides}
    return OmegaConf.create({"run_dir": str(tmp_path)}), {"outputs": {"model": record}}, export


def test_a_validated_unchanged_export_is_accepted(tmp_path):
    from med42_train.train.dpo import validated_export

    cfg, manifest, export = _fake_sft(tmp_path)
    assert validated_export(cfg, manifest) == str(export)


@pytest.mark.parametrize("problem", ["tampered", "not_validated", "no_hash", "missing"])
def test_an_unvalidated_or_changed_export_is_refused_with_the_fix(tmp_path, problem):
    import shutil

    from med42_train.runtime.rundir import StageInputError
    from med42_train.train.dpo import validated_export

    overrides = {"not_validated": {"validated": False}, "no_hash": {"sha256": None}}.get(problem, {})
    cfg, manifest, export = _fake_sft(tmp_path, **overrides)
    if problem == "tampered":
        (export / "model.safetensors").write_bytes(b"weightz")
    if problem == "missing":
        shutil.rmtree(export)
    with pytest.raises(StageInputError, match="rerun `med42 sft .* overwrite=true`"):
        validated_export(cfg, manifest)


def test_dpo_stage_refuses_a_tampered_sft_export_before_loading_a_model(demo_run, tmp_path):
    run_dir = copy_run(demo_run, tmp_path, stages=("data", "sft"))
    with open(run_dir / "sft" / "model" / "config.json", "a") as handle:
        handle.write("\n")
    result = run_med42(["dpo", f"run_dir={run_dir}", "logger.wandb=false"], check=False, timeout_s=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "changed after validation" in output and "overwrite=true" in output
    assert "Loading weights" not in output and not (run_dir / "dpo" / "COMPLETE").exists()


def test_an_iteration_without_pairs_is_refused_before_any_model_loads(demo_run, tmp_path):
    run_dir = copy_run(demo_run, tmp_path, stages=("data", "sft"))
    result = run_med42(["dpo", f"run_dir={run_dir}", "logger.wandb=false", "dpo.iterations=3"], check=False,
                       timeout_s=300)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "no preference pairs are tagged iteration 3" in output
    assert "dpo.iterations=2" in output
