"""The eval stage on the demo pipeline: every checkpoint, the protocol block, the per-task cache, local folders."""

from __future__ import annotations

import json

from med42_train.config import load_config
from med42_train.eval.checkpoints import run_models
from med42_train.eval.compare import comparison_table
from tests.conftest import run_med42

TASK = "med42_demo_mcqa_full"


def _demo_labels(demo_run) -> list[str]:
    models, _ = run_models(load_config([f"run_dir={demo_run}"]), ["base", "sft", "dpo"])
    return [model.label for model in models]


def test_eval_scores_every_checkpoint_beside_a_paper_column(demo_run):
    summary = json.loads((demo_run / "eval" / "summary.json").read_text())
    labels = _demo_labels(demo_run)
    assert list(summary) == labels and labels[:2] == ["base", "sft"] and labels[2].startswith("dpo")
    for scores in summary.values():
        assert 0.0 <= scores[TASK]["acc"] <= 1.0 and scores[TASK]["acc_stderr"] > 0
    table = (demo_run / "eval" / "comparison.md").read_text()
    assert "| paper row | paper (%) | Δ (points) |" in table
    assert all(f"| {label} | {TASK} |" in table for label in labels)


def test_results_carry_the_protocol_and_the_logged_continuation_is_the_answer(demo_run):
    results = json.loads((demo_run / "eval" / "sft" / "results.json").read_text())[TASK]
    protocol = results["protocol"]
    assert protocol["harness_version"] == "0.4.13" and protocol["variant"] == "full"
    assert protocol["num_fewshot"] == 0 and protocol["apply_chat_template"] and protocol["limit"] == 16
    assert protocol["dtype"] == "float32" and len(protocol["chat_template_sha256"]) == 64
    assert results["n-samples"][TASK]["effective"] == 16
    samples = [json.loads(line) for line in (demo_run / "eval" / "sft" / f"samples_{TASK}.jsonl").open()]
    assert len(samples) == 16
    (context,) = {request[0] for request in samples[0]["arguments"]}
    continuations = [request[1] for request in samples[0]["arguments"]]
    assert context.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
    assert context.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert continuations == samples[0]["doc"]["options"]
    # The request as the model saw it: one BOS, and the continuation's ids are the answer's alone.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_run / "sft" / "model")
    first = protocol["first_request"]
    assert first["num_bos"] == 1 and first["continuation"] == continuations[0]
    assert first["continuation_ids"] == tokenizer.encode(continuations[0], add_special_tokens=False)


def test_adding_a_task_evaluates_only_that_task(demo_run, tmp_path):
    """A second run directory on the same stages and cache: the demo's task comes from the cache, only the new
    task is evaluated, for every checkpoint."""
    for stage in ("data", "sft", "dpo"):
        (tmp_path / stage).symlink_to(demo_run / stage)
    args = ["eval", f"run_dir={tmp_path}", "eval.limit=16", "logger.wandb=false",
            f"eval.cache_dir={demo_run.parent / '.cache' / 'eval'}", f"eval.tasks=[{TASK},med42_demo_mcqa_letter]"]
    log = run_med42(args).stdout
    for label in _demo_labels(demo_run):
        assert f"{label}: 1 task(s) cached, evaluating ['med42_demo_mcqa_letter']" in log
    ours = json.loads((tmp_path / "eval" / "summary.json").read_text())
    theirs = json.loads((demo_run / "eval" / "summary.json").read_text())
    assert {label: s[TASK] for label, s in ours.items()} == {label: s[TASK] for label, s in theirs.items()}
    assert run_med42(args).stdout.count("nothing to do") == 1  # the same request again: a no-op


def test_a_local_model_folder_is_evaluated_alone_into_its_own_folder(demo_run, tmp_path):
    folder = demo_run / "sft" / "model"
    run_med42(["eval", f"run_dir={tmp_path}", f"eval.models=[{folder}]", "eval.limit=4", "logger.wandb=false"])
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert list(summary) == ["model"] and (tmp_path / "eval" / "model" / "results.json").is_file()
    assert not (tmp_path / "data").exists()  # no other stage was needed
    manifest = json.loads((tmp_path / "eval" / "manifest.json").read_text())
    assert manifest["inputs"]["model:model"]["path"] == str(folder)


def test_comparison_table_puts_the_paper_beside_ours():
    scores = {"base": {"med42_medqa_full": {"acc": 0.6, "acc_stderr": 0.01}},
              "dpo_iter3": {"med42_medqa_full": {"acc": 0.65, "acc_stderr": 0.01, "acc_norm": 0.6}}}
    table = comparison_table(scores, {"base": "Llama3-8B-Instruct", "dpo_iter3": "Med42-v2 8B"})
    assert table.splitlines()[2:] == [
        "| base | med42_medqa_full | 60.00 | 1.00 | — | Llama3-8B-Instruct | 61.64 | -1.64 |",
        "| dpo_iter3 | med42_medqa_full | 65.00 | 1.00 | 60.00 | Med42-v2 8B | 62.84 | +2.16 |"]


def test_the_demo_eval_set_shares_no_text_with_training_but_asks_what_it_teaches(demo_run):
    from med42_train.config import RECIPE_DIR

    report = json.loads((demo_run / "data" / "manifest.json").read_text())["decontamination"]["demo_mcqa"]
    assert (report["items_indexed"], report["items_matched"], report["samples_removed"]) == (100, 0, 0)
    demo = RECIPE_DIR / "demo"
    training = " ".join([(demo / "medical_flashcards.json").read_text(), (demo / "medqa_train.jsonl").read_text(),
                         (demo / "dialogues_sharegpt.json").read_text()]).lower()
    items = [json.loads(line) for line in (demo / "mcqa_eval.jsonl").open()]
    worded = [item for item in items if not item["answer"][:1].isdigit()]  # lab values are taught as ranges
    assert len(worded) >= 80 and all(item["answer"].lower() in training for item in worded)
    assert all(item["options"][item["answer_idx"]] == item["answer"] for item in items)


def test_the_paper_suite_runs_on_local_copies_beside_the_paper_row(demo_run, realdata, tmp_path):
    """A released model's folder name (here the demo SFT export under that name) picks the paper row compared."""
    import shutil

    folder = tmp_path / "Llama3-Med42-8B"
    shutil.copytree(demo_run / "sft" / "model", folder)
    run_med42(["eval", "experiment=med42_v2_8b", f"run_dir={tmp_path / 'run'}", f"eval.models=[{folder}]",
               "eval.tasks=[med42_mmlu_clinical_full,med42_medqa_full]", "eval.limit=2", "logger.wandb=false",
               "model.dtype=float32", f"eval.data_files.mmlu={realdata / 'mmlu_medical'}",
               f"eval.data_files.medqa={realdata / 'medqa_usmle_4options_phrases_no_exclude_test.jsonl'}"])
    table = (tmp_path / "run" / "eval" / "comparison.md").read_text()
    assert "| Med42-v2 8B | 62.84 |" in table.split("| med42_medqa_full |")[1].splitlines()[0]
    assert "| Med42-v2 8B | 75.76 |" in table.split("| med42_mmlu_clinical_full |")[1].splitlines()[0]
    summary = json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())["Llama3-Med42-8B"]
    assert {"med42_mmlu_clinical_full", "med42_mmlu_anatomy_full", "med42_medqa_full"} <= set(summary)
    results = json.loads((tmp_path / "run" / "eval" / "Llama3-Med42-8B" / "results.json").read_text())
    first = results["med42_medqa_full"]["protocol"]["first_request"]
    medqa = json.loads((realdata / "medqa_usmle_4options_phrases_no_exclude_test.jsonl").open().readline())
    assert first["num_bos"] == 1 and first["continuation"] == medqa["options"]["A"]
