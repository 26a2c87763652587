"""The shipped task definitions: both scoring variants, and the real files loading through the local override."""

from __future__ import annotations

import csv
import json

import pytest

from med42_train.config import load_config
from med42_train.eval import harness
from med42_train.eval.task_defs import TASK_DIR
from tests.eval.fake_lm import FakeLM, evaluate_fake

USER = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
ASSISTANT = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
DOCS = [{"question": "Which organ makes bile?", "answer": "Liver", "answer_idx": "B",
         "options": {"A": "Heart", "B": "Liver", "C": "Kidney", "D": "Lung"}},
        {"question": "Which organ filters blood?", "answer": "Liver", "answer_idx": "B",
         "options": {"A": "Skin", "B": "Liver", "C": "Brain", "D": "Bone"}}]


def test_letter_and_full_variants_pick_what_they_score(tmp_path):
    """The fake model favours the text 'Liver' (the gold answer, B) and the letter 'C': each variant must follow."""
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    lm = FakeLM(lambda context, continuation: 0.0 if continuation in ("Liver", "C") else -9.0)
    results = evaluate_fake(tmp_path, lm, ["med42_demo_mcqa_full", "med42_demo_mcqa_letter"],
                        [f"eval.data_files.demo_mcqa={path}"])
    full, letter = results["med42_demo_mcqa_full"], results["med42_demo_mcqa_letter"]
    assert full["results"]["med42_demo_mcqa_full"]["acc,none"] == 1.0
    assert letter["results"]["med42_demo_mcqa_letter"]["acc,none"] == 0.0
    picked = [max(range(4), key=lambda i: s["filtered_resps"][i][0]) for s in
              letter["samples"]["med42_demo_mcqa_letter"]]
    assert picked == [2, 2]  # C, the favoured letter, though the gold is B
    # The scored continuations are exactly the option texts / the letters: no leading space or newline.
    assert {c for _, c in lm.requests} == {"Heart", "Liver", "Kidney", "Lung", "Skin", "Brain", "Bone", *"ABCD"}
    assert full["protocol"]["variant"] == "full" and letter["protocol"]["variant"] == "letter"


def _medqa_raw(realdata):
    rows = [json.loads(line) for line in open(realdata / "medqa_usmle_4options_phrases_no_exclude_test.jsonl")]
    return [(r["question"], [r["options"][k] for k in "ABCD"], "ABCD".index(r["answer_idx"])) for r in rows]


def _medmcqa_raw(realdata):
    rows = [json.loads(line) for line in open(realdata / "medmcqa_dev_medagents_format_2000.jsonl")]
    return [(r["question"], [r["options"][k] for k in "ABCD"], "ABCD".index(r["answer_idx"])) for r in rows]


def _pubmedqa_raw(realdata):
    records = json.loads((realdata / "pubmedqa_ori_pqal.json").read_text())
    truth = json.loads((realdata / "pubmedqa_test_ground_truth.json").read_text())
    return [("Abstract: " + "\n".join(records[p]["CONTEXTS"]) + "\nQuestion: " + records[p]["QUESTION"],
             ["yes", "no", "maybe"], ["yes", "no", "maybe"].index(d)) for p, d in truth.items()]


def _mmlu_raw(subject):
    def read(realdata):
        with open(realdata / "mmlu_medical" / f"{subject}_test.csv", newline="") as handle:
            return [(r[0], r[1:5], "ABCD".index(r[5])) for r in csv.reader(handle)]
    return read


MMLU_SUBJECTS = {"anatomy": 135, "clinical_knowledge": 265, "college_biology": 144, "college_medicine": 173,
                 "medical_genetics": 100, "professional_medicine": 282}
REAL_TASKS = [  # (task, eval.data_files key, path under realdata, raw reader, documents in the file)
    ("med42_medqa", "medqa", "medqa_usmle_4options_phrases_no_exclude_test.jsonl", _medqa_raw, 1273),
    ("med42_medmcqa", "medmcqa", "medmcqa_dev_medagents_format_2000.jsonl", _medmcqa_raw, 2000),
    ("med42_pubmedqa", "pubmedqa", ".", _pubmedqa_raw, 500),
    *[(f"med42_mmlu_{s}", "mmlu", "mmlu_medical", _mmlu_raw(s), n) for s, n in MMLU_SUBJECTS.items()],
]


@pytest.mark.parametrize("variant", ["full", "letter"])
@pytest.mark.parametrize("task, key, relpath, read_raw, num_docs", REAL_TASKS, ids=[t[0] for t in REAL_TASKS])
def test_real_files_load_with_counts_gold_and_the_llama3_prompt(realdata, tmp_path, task, key, relpath, read_raw,
                                                               num_docs, variant):
    from lm_eval.tasks import get_task_dict

    cfg = load_config([f"run_dir={tmp_path}", f"eval.data_files.{key}={realdata / relpath}"])
    (loaded,) = get_task_dict([f"{task}_{variant}"], harness.task_manager(cfg, TASK_DIR)).values()
    docs = list(loaded.eval_docs)
    raw = read_raw(realdata)
    assert len(docs) == len(raw) == num_docs
    for i in (0, 1, len(raw) // 2, len(raw) - 1):  # gold spot-checked against the raw file
        question, options, gold = raw[i]
        assert loaded.doc_to_target(docs[i]) == gold
        assert docs[i]["options"][gold] == options[gold].strip()
    question, options, gold = raw[0]
    lettered = "\n".join(f"{'ABCD'[i]}. {o.strip()}" for i, o in enumerate(options))
    expected_context = USER + f"{question.strip()}\n\n{lettered}" + ASSISTANT
    lm = FakeLM(lambda context, continuation: 0.0)
    results = evaluate_fake(tmp_path, lm, [f"{task}_{variant}"], [f"eval.data_files.{key}={realdata / relpath}"], 1)
    contexts = {context for context, _ in lm.requests}
    assert contexts == {expected_context} and expected_context.count("<|begin_of_text|>") == 1
    expected_choices = [o.strip() for o in options] if variant == "full" else list("ABCD"[: len(options)])
    assert [c for _, c in lm.requests] == expected_choices
    assert results[f"{task}_{variant}"]["protocol"]["num_fewshot"] == 0


def test_the_mmlu_group_is_the_size_weighted_mean_of_the_six_subjects(realdata, tmp_path):
    """A fake model that always picks the longest option: each subject's accuracy is known from the raw CSVs."""
    lm = FakeLM(lambda context, continuation: float(len(continuation)))
    results = evaluate_fake(tmp_path, lm, ["med42_mmlu_clinical_full"],
                        [f"eval.data_files.mmlu={realdata / 'mmlu_medical'}"])
    scores = results["med42_mmlu_clinical_full"]["results"]
    num_correct = 0
    for subject, num_docs in MMLU_SUBJECTS.items():
        raw = _mmlu_raw(subject)(realdata)
        correct = sum(max(range(4), key=lambda i: (len(opts[i].strip()), -i)) == gold for _, opts, gold in raw)
        assert scores[f"med42_mmlu_{subject}_full"]["acc,none"] == pytest.approx(correct / num_docs)
        num_correct += correct
    assert scores["med42_mmlu_clinical_full"]["acc,none"] == pytest.approx(num_correct / sum(MMLU_SUBJECTS.values()))
