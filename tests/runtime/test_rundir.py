"""The run-directory contract: manifests, the COMPLETE marker, skip-if-same, refuse-if-different."""

from __future__ import annotations

import json

import pytest

from med42_train.config import load_config
from med42_train.runtime.rundir import (
    COMPLETE, StageConflictError, StageInputError, begin_stage, finish_stage, fingerprint, is_up_to_date,
    require_complete, stage_input,
)

INPUTS = {"recipe": {"path": "/x/recipe.yaml", "sha256": "abc"}}


def _complete_data_stage(cfg):
    run = begin_stage(cfg, "data", INPUTS)
    (run.dir / "out.txt").write_text("result")
    return finish_stage(run, {"out": {"path": str(run.dir / "out.txt")}}, {"num_samples": 3})


def test_a_missing_or_incomplete_input_stage_is_refused_naming_the_command(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}"])
    with pytest.raises(StageInputError, match="med42 data"):
        require_complete(cfg, "data")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text("{}")  # a crashed stage: manifest but no COMPLETE
    with pytest.raises(StageInputError, match="incomplete"):
        stage_input(cfg, "data")


def test_finish_writes_manifest_then_complete_with_its_fingerprint(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}"])
    manifest = _complete_data_stage(cfg)
    on_disk = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert on_disk == manifest
    assert (tmp_path / "data" / COMPLETE).read_text().strip() == fingerprint(manifest)
    assert on_disk["world_size"] == 1 and on_disk["inputs"] == INPUTS and "torch" in on_disk["versions"]
    assert (tmp_path / "data" / "config.yaml").is_file()


def test_same_config_and_inputs_is_a_no_op(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}"])
    _complete_data_stage(cfg)
    assert is_up_to_date(cfg, "data", INPUTS)
    assert begin_stage(cfg, "data", INPUTS) is None


def test_other_config_or_inputs_are_refused_unless_overwrite(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}"])
    _complete_data_stage(cfg)
    with pytest.raises(StageConflictError, match="config"):
        begin_stage(load_config([f"run_dir={tmp_path}", "data.max_length=256"]), "data", INPUTS)
    with pytest.raises(StageConflictError, match="inputs"):
        begin_stage(cfg, "data", {"recipe": {"path": "/x/recipe.yaml", "sha256": "changed"}})
    run = begin_stage(load_config([f"run_dir={tmp_path}", "data.max_length=256", "overwrite=true"]), "data", INPUTS)
    assert run is not None and not (run.dir / COMPLETE).exists() and not (run.dir / "out.txt").exists()
    assert run.cfg.data.max_length == 256  # the frozen config is what the stage runs with


def test_an_interrupted_attempt_is_resumed_only_with_the_same_settings(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}"])
    run = begin_stage(cfg, "data", INPUTS)
    (run.dir / "checkpoint-1").mkdir()  # then the job dies before COMPLETE
    again = begin_stage(cfg, "data", INPUTS)
    assert again is not None and (again.dir / "checkpoint-1").is_dir()  # kept for resuming
    with pytest.raises(StageConflictError, match="interrupted run"):
        begin_stage(load_config([f"run_dir={tmp_path}", "data.max_length=256"]), "data", INPUTS)
    fresh = begin_stage(load_config([f"run_dir={tmp_path}", "data.max_length=256", "overwrite=true"]), "data", INPUTS)
    assert not (fresh.dir / "checkpoint-1").exists()


def test_file_hash_follows_content_changes(tmp_path):
    import os

    from med42_train.runtime.rundir import sha256_file

    path = tmp_path / "source.jsonl"
    path.write_text("a\n")
    first = sha256_file(path)
    assert sha256_file(path) == first
    path.write_text("b\n")
    os.utime(path, ns=(1, 1))  # even with an unusual mtime, the changed size/mtime key forces a re-read
    assert sha256_file(path) != first
