"""The mixture plan: `med42 data --dry-run` prints it before any tokenization and writes nothing."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from med42_train.cli import main
from med42_train.data.plan import make_plan
from med42_train.data.recipe import load_recipe
from med42_train.data.tokenize import ChatEncoder, tokenize_sft
from med42_train.models.tokenizer import finalize
from tests.data.assembly_support import alpaca_records, save_fixed_tokenizer, write_jsonl, write_recipe


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return save_fixed_tokenizer(tmp_path_factory.mktemp("plan_tokenizer"))


@pytest.fixture()
def recipe(tmp_path):
    write_jsonl(tmp_path / "up.jsonl", alpaca_records(10, seed=1))
    write_jsonl(tmp_path / "budget.jsonl", alpaca_records(30, seed=2))
    write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "Dose?", "chosen": "500 mg.", "rejected": "Any."}] * 4)
    return write_recipe(tmp_path, {"up": {"path": "up.jsonl", "format": "alpaca", "samples": 25},
                                   "budget": {"path": "budget.jsonl", "format": "alpaca", "tokens": 300}},
                        preference={"prefs": {"path": "prefs.jsonl", "format": "preference_flat", "iteration": 1}})


def test_plan_estimates_from_the_tokenized_records(recipe, tokenizer_dir):
    tokenizer = finalize(AutoTokenizer.from_pretrained(str(tokenizer_dir)))
    rows = {row.source: row for row in make_plan(load_recipe(recipe), ChatEncoder(tokenizer))}
    up = [tokenize_sft(tokenizer, [{"role": "user", "content": r["instruction"]},
                                   {"role": "assistant", "content": r["output"]}]) for r in alpaca_records(10, seed=1)]
    tokens_per_sample = sum(len(ids) for ids, _ in up) / 10
    assert (rows["up"].records_available, rows["up"].sampling_factor) == (10, 2.5)
    assert rows["up"].est_tokens == pytest.approx(25 * tokens_per_sample)
    assert rows["budget"].est_supervised_tokens == pytest.approx(300)
    assert rows["budget"].sampling_factor == pytest.approx(rows["budget"].est_samples / 30)
    assert rows["up"].share + rows["budget"].share == pytest.approx(1.0) and rows["prefs"].share == 1.0


def test_dry_run_prints_the_table_exits_zero_and_writes_nothing(recipe, tokenizer_dir, tmp_path, capsys):
    run_dir = tmp_path / "runs" / "plan"
    code = main(["data", "--dry-run", f"run_dir={run_dir}", f"data.recipe={recipe}",
                 f"model.name_or_path={tokenizer_dir}", "logger.wandb=false"])
    out = capsys.readouterr().out
    assert code == 0
    lines = {line.split()[1]: line.split() for line in out.splitlines() if line.split()[:1] in (["sft"], ["preference"])}
    assert lines["up"][2:6] == ["medical", "10", "25", "samples"] and lines["up"][6] == "2.5"
    assert lines["budget"][4:6] == ["300", "tokens"] and lines["prefs"][3] == "4"
    assert "TOTAL" in lines and not (tmp_path / "runs").exists()  # neither the run dir nor the cache


def test_dry_run_on_the_demo_estimates_from_characters(capsys, tmp_path):
    assert main(["data", "--dry-run", f"run_dir={tmp_path / 'demo'}"]) == 0
    out = capsys.readouterr().out
    # The demo's tokenizer is trained by the stage itself, so a dry run estimates tokens from characters.
    assert "medical_flashcards" in out and "chars/4" in out and not (tmp_path / "demo").exists()
