"""Which checkpoint a run resumes from: only COMPLETE ones, the newest, and only with the same world size."""

from __future__ import annotations

import json

import pytest

from med42_train.train.checkpoint import (
    COMPLETE_MARKER, CheckpointMismatchError, _keep_last, _publish, complete_checkpoints, resume_checkpoint,
)


def _checkpoint(root, step, complete=True, world_size=1):
    path = root / f"checkpoint-{step}"
    (path / "pytorch_model_fsdp_0").mkdir(parents=True)
    if complete:
        (path / COMPLETE_MARKER).write_text(json.dumps({"global_step": step, "world_size": world_size}))
    return path


def test_a_checkpoint_without_its_complete_marker_is_never_resumed_from(tmp_path):
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 20, complete=False)  # the newest, but its save was interrupted
    assert [step for step, _ in complete_checkpoints(tmp_path)] == [10]
    assert resume_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")


def test_no_complete_checkpoint_means_a_fresh_start(tmp_path):
    _checkpoint(tmp_path, 5, complete=False)
    assert resume_checkpoint(tmp_path) is None
    assert resume_checkpoint(tmp_path / "missing") is None


def test_the_newest_complete_checkpoint_wins_by_step_not_by_name(tmp_path):
    for step in (9, 100, 20):
        _checkpoint(tmp_path, step)
    assert resume_checkpoint(tmp_path) == str(tmp_path / "checkpoint-100")


def test_resuming_onto_another_world_size_is_refused_naming_the_fix(tmp_path, monkeypatch):
    _checkpoint(tmp_path, 10, world_size=16)
    monkeypatch.setenv("WORLD_SIZE", "8")
    with pytest.raises(CheckpointMismatchError, match="written by 16 ranks and this run has 8.*overwrite=true"):
        resume_checkpoint(tmp_path)


def test_publish_renames_the_staged_folder_then_marks_it_complete(tmp_path):
    staged = tmp_path / ".staging" / "checkpoint-7"
    (staged / "optimizer_0").mkdir(parents=True)
    _publish(staged, tmp_path, 7)
    assert not staged.exists() and (tmp_path / "checkpoint-7" / "optimizer_0").is_dir()
    assert json.loads((tmp_path / "checkpoint-7" / COMPLETE_MARKER).read_text()) == {"global_step": 7,
                                                                                       "world_size": 1}


def test_keep_last_k_deletes_older_checkpoints_and_older_debris_only(tmp_path):
    for step in (10, 20, 30):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 5, complete=False)  # debris older than anything kept
    _checkpoint(tmp_path, 40, complete=False)  # newer than the kept ones: may be another writer's; left alone
    _keep_last(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-20", "checkpoint-30",
                                                                     "checkpoint-40"]
