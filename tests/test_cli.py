"""The command line: config errors and misuse end with exit code 2 and a message naming the fix."""

from __future__ import annotations


def test_cli_reports_config_errors_with_exit_code_2(capsys):
    from med42_train.cli import main

    assert main(["sft", "sft.learning_rate=abc"]) == 2
    assert "sft.learning_rate" in capsys.readouterr().err


def test_single_process_stages_refuse_to_run_under_torchrun(monkeypatch, capsys):
    from med42_train.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["data"]) == 2
    assert "without torchrun" in capsys.readouterr().err
