"""Small local readers for ../shared/realdata files (the project's format adapters live on another branch; these
tests must not depend on them)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

MMLU_SUBJECTS = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                 "professional_medicine")


def format_mcqa(question: str, options: list[str]) -> str:
    """The SFT user-turn layout: the question, a blank line, then lettered options one per line."""
    return question + "\n\n" + "\n".join(f"{chr(ord('A') + i)}. {option}" for i, option in enumerate(options))


def read_medqa(path: Path) -> list[tuple[str, str, list[str]]]:
    """(item id, question, options A..) per line of a jind11 MedQA jsonl file; the id is the 1-based line."""
    items = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        record = json.loads(line)
        items.append((f"line{line_no}", record["question"], [record["options"][k] for k in sorted(record["options"])]))
    return items


def read_mmlu(path: Path) -> list[tuple[str, str, list[str]]]:
    """(item id, question, options A-D) per row of a headerless MMLU CSV; the id is the 1-based row."""
    with path.open(encoding="utf-8", newline="") as handle:
        return [(f"row{i}", row[0], row[1:5]) for i, row in enumerate(csv.reader(handle), start=1)]


def read_pubmedqa_test(realdata: Path) -> list[tuple[str, str]]:
    """(PMID, question + contexts) for the 500 test ids of the PubMedQA ground-truth file."""
    records = json.loads((realdata / "pubmedqa_ori_pqal.json").read_text(encoding="utf-8"))
    test_ids = json.loads((realdata / "pubmedqa_test_ground_truth.json").read_text(encoding="utf-8"))
    return [(pmid, records[pmid]["QUESTION"] + "\n\n" + "\n".join(records[pmid]["CONTEXTS"])) for pmid in test_ids]


def read_alpaca_texts(path: Path) -> list[str]:
    """instruction, input and output of each alpaca-style record, joined by newlines."""
    records = json.loads(path.read_text(encoding="utf-8"))
    return ["\n".join(part for part in (r["instruction"], r["input"], r["output"]) if part) for r in records]
