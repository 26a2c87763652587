"""The pipeline end to end: every stage COMPLETE with a manifest; a re-run skips; a changed config is refused."""

from __future__ import annotations

import re

import json

from tests.conftest import SMALL_RUN_OVERRIDES, run_med42

STAGES = ("data", "sft", "dpo", "eval", "elo", "report")


def test_every_stage_leaves_a_manifest_and_complete_marker(demo_run):
    for stage in STAGES:
        manifest = json.loads((demo_run / stage / "manifest.json").read_text())
        assert (demo_run / stage / "COMPLETE").is_file()
        assert manifest["stage"] == stage and manifest["config_hash"] and manifest["timings"]["wall_s"] > 0
        assert (demo_run / stage / "config.yaml").is_file()
    data = json.loads((demo_run / "data" / "manifest.json").read_text())
    assert set(data["figures"]["sft_sources"]) == {"medical_flashcards", "medqa", "dialogues"}
    for counts in data["figures"]["sft_sources"].values():
        assert counts["read"] == counts["kept"] + sum(counts["dropped_by_reason"].values())


def test_rerun_with_the_same_config_skips_every_stage(demo_run):
    before = {stage: (demo_run / stage / "COMPLETE").stat().st_mtime_ns for stage in STAGES}
    result = run_med42(["pipeline", f"run_dir={demo_run}", *SMALL_RUN_OVERRIDES])
    for stage in STAGES:
        assert f"[pipeline] {stage}: COMPLETE with the same config and inputs, skipped" in result.stdout
    assert "torch.distributed.run" not in result.stdout  # nothing was launched
    assert before == {stage: (demo_run / stage / "COMPLETE").stat().st_mtime_ns for stage in STAGES}


def test_a_changed_training_config_is_refused_without_overwrite(demo_run):
    result = run_med42(["pipeline", f"run_dir={demo_run}", *SMALL_RUN_OVERRIDES, "sft.learning_rate=1e-3"],
                       check=False)
    assert result.returncode == 2
    assert "sft is COMPLETE but was made with other config" in result.stderr and "overwrite=true" in result.stderr


def test_training_stages_are_launched_with_torchrun(demo_run):
    log = (demo_run / "pipeline.log").read_text()
    for stage in ("sft", "dpo"):
        assert re.search(rf"torch.distributed.run --nproc-per-node=2 .*--standalone -m med42_train {stage}", log)
