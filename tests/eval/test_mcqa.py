"""lm-evaluation-harness on base, SFT and DPO with the project's task (full-answer log-likelihood, chat template)."""

from __future__ import annotations

import json

import yaml

from med42_train.config import RECIPE_DIR
from med42_train.eval.mcqa import comparison_table, install_tasks


def test_eval_scores_every_model_on_the_demo_task(demo_run):
    summary = json.loads((demo_run / "eval" / "summary.json").read_text())
    assert set(summary) == {"base", "sft", "dpo"}
    for scores in summary.values():
        assert 0.0 <= scores["med42_demo_mcqa"]["acc"] <= 1.0
    table = (demo_run / "eval" / "comparison.md").read_text()
    assert all(f"| {label} |" in table for label in summary)


def test_eval_used_zero_shot_and_the_chat_template(demo_run):
    results = json.loads((demo_run / "eval" / "sft" / "results.json").read_text())
    assert results["config"]["limit"] == 16
    assert results["n-shot"]["med42_demo_mcqa"] == 0
    assert results["n-samples"]["med42_demo_mcqa"]["effective"] == 16
    samples = [json.loads(line) for line in (demo_run / "eval" / "sft" / "samples_med42_demo_mcqa.jsonl").open()]
    assert len(samples) == 16
    doc = samples[0]["doc"]
    contexts = {request[0] for request in samples[0]["arguments"]}
    continuations = [request[1] for request in samples[0]["arguments"]]
    # One chat-formatted question (Llama 3 headers, ending in the assistant header), four full answer texts.
    (context,) = contexts
    assert context.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
    assert context.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert continuations == [doc["options"][letter] for letter in "ABCD"]


def test_installed_task_points_at_the_shipped_eval_set_and_scores_full_answers(tmp_path):
    task = yaml.safe_load((install_tasks(["med42_demo_mcqa"], tmp_path) / "med42_demo_mcqa.yaml").read_text())
    assert task["dataset_kwargs"]["data_files"]["test"] == str(RECIPE_DIR / "demo" / "mcqa_eval.jsonl")
    assert task["output_type"] == "multiple_choice" and "options['A']" in task["doc_to_choice"]


def test_comparison_table_has_a_row_per_model():
    table = comparison_table({"base": {"t": {"acc": 0.25}}, "sft": {"t": {"acc": 0.5, "acc_norm": 0.625}}})
    assert table.splitlines() == ["| model | t acc (acc_norm) |", "|---|---|", "| base | 25.00 |",
                                  "| sft | 50.00 (62.50) |"]
