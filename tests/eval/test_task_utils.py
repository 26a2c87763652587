"""The tasks' loader (med42_train/eval/tasks/utils.py): every layout becomes {question, options, answer}."""

from __future__ import annotations

import importlib.util
import json

import pytest

from med42_train.eval.task_defs import TASK_DIR
from tests.eval.fake_lm import FakeLM, evaluate_fake

_spec = importlib.util.spec_from_file_location("med42_task_utils", TASK_DIR / "utils.py")
utils = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(utils)


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _medmcqa(cop):
    return {"question": f"q{cop}", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": cop}


@pytest.mark.parametrize("cops, golds", [([0, 1, 3], [0, 1, 3]), ([1, 2, 4], [0, 1, 3])])
def test_medmcqa_answers_are_0_or_1_based_as_the_file_shows(tmp_path, cops, golds):
    path = _write(tmp_path / "dev.jsonl", [_medmcqa(c) for c in cops])
    docs = utils.load_docs("medmcqa", split="validation", med42_data_files={"medmcqa": str(path)})["validation"]
    assert docs["answer"] == golds


def test_medmcqa_answers_that_could_be_either_are_refused(tmp_path):
    path = _write(tmp_path / "dev.jsonl", [_medmcqa(c) for c in (1, 2, 3)])
    with pytest.raises(ValueError, match="0-based from 1-based"):
        utils.load_docs("medmcqa", med42_data_files={"medmcqa": str(path)})


def test_an_unknown_layout_names_its_columns(tmp_path):
    path = _write(tmp_path / "x.jsonl", [{"prompt": "q", "label": 1}])
    with pytest.raises(ValueError, match=r"unknown MCQA layout with columns \['label', 'prompt'\]"):
        utils.load_docs("medqa", med42_data_files={"medqa": str(path)})


def test_mmlu_pro_health_keeps_its_category_and_scores_up_to_ten_options(tmp_path):
    options = [f"option {i}" for i in range(10)]
    rows = [{"question": "health q", "options": options, "answer_index": 7, "category": "health"},
            {"question": "law q", "options": options[:4], "answer_index": 0, "category": "law"}]
    path = _write(tmp_path / "mmlu_pro.jsonl", rows)
    lm = FakeLM(lambda context, continuation: 0.0 if continuation in ("option 7", "J") else -1.0)
    results = evaluate_fake(tmp_path, lm, ["med42_mmlu_pro_health_full", "med42_mmlu_pro_health_letter"],
                        [f"eval.data_files.mmlu_pro={path}"])
    assert results["med42_mmlu_pro_health_full"]["results"]["med42_mmlu_pro_health_full"]["acc,none"] == 1.0
    assert results["med42_mmlu_pro_health_letter"]["results"]["med42_mmlu_pro_health_letter"]["acc,none"] == 0.0
    (context,) = {c for c, _ in lm.requests}
    assert "health q\n\nA. option 0\n" in context and "\nJ. option 9<|eot_id|>" in context
    assert sorted(c for _, c in lm.requests if len(c) == 1) == list("ABCDEFGHIJ")


def test_usmle_reads_a_local_file_in_the_medqa_layout(tmp_path):
    row = {"question": "Step 1 q", "options": {"A": "x", "B": "y", "C": "z", "D": "w", "E": "v"}, "answer_idx": "E"}
    docs = utils.load_docs("usmle", med42_data_files={"usmle": str(_write(tmp_path / "u.jsonl", [row]))})["test"]
    assert (docs[0]["options"], docs[0]["answer"]) == (["x", "y", "z", "w", "v"], 4)
    with pytest.raises(ValueError, match="eval.data_files.usmle"):
        utils.load_docs("usmle")
