"""Telling a signal-stop from a crash after a launch: the rule `med42 pipeline` and the Slurm jobs share."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from med42_train.runtime.preemption import PREEMPTED_EXIT_CODE, launcher_exit_code, stopped_by_signal


def _marker(path, age_s: float = 0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"global_step": 3, "signal": "SIGUSR1"}')
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_a_marker_newer_than_the_launch_turns_a_failure_into_75(tmp_path):
    launched_at = time.time() - 10
    _marker(tmp_path / "sft" / "PREEMPTED")
    assert launcher_exit_code(1, tmp_path / "sft", launched_at) == PREEMPTED_EXIT_CODE
    assert launcher_exit_code(0, tmp_path / "sft", launched_at) == 0  # success stays success


def test_an_older_marker_or_none_leaves_the_failure_a_failure(tmp_path):
    _marker(tmp_path / "sft" / "PREEMPTED", age_s=60)  # left by an earlier attempt
    assert launcher_exit_code(1, tmp_path / "sft", time.time() - 10) == 1
    assert launcher_exit_code(1, tmp_path / "eval", time.time() - 10) == 1


def test_a_rounds_marker_counts_for_its_stage(tmp_path):
    marker = _marker(tmp_path / "dpo" / "iter_2" / "PREEMPTED")
    assert stopped_by_signal(tmp_path / "dpo", time.time() - 10) == marker


def test_the_batch_scripts_helper_prints_the_code(tmp_path):
    _marker(tmp_path / "sft" / "PREEMPTED")
    result = subprocess.run([sys.executable, "-m", "med42_train.launch.exit_code", str(tmp_path / "sft"),
                             str(time.time() - 10), "1"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "75"
