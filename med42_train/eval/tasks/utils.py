"""Loaders and prompt functions of the project's lm-eval tasks (the task YAMLs refer to them with `!function`).

Every task reads its data through `load_docs` (the harness's `custom_dataset` hook, called with the task's
`dataset_kwargs` and the TaskManager's metadata): the hub dataset by default, or a local file/folder when the
eval stage passes one in `metadata.med42_data_files[<dataset>]` (`eval.data_files.<dataset>=<path>`). Whatever
the source's layout, each document becomes {question, options (list of texts), answer (index)}; an unknown
layout fails with the columns it found instead of scoring garbage.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable, Optional

import datasets

from med42_train.config import RECIPE_DIR  # where the demo task's default file lives (also from a copied utils.py)

LETTERS = "ABCDEFGHIJ"  # MMLU-Pro has up to 10 options
PUBMEDQA_CHOICES = ["yes", "no", "maybe"]


# ----------------------------------------------------------------------------- prompt

def doc_to_text(doc: dict) -> str:
    """The question and its lettered options; the chat template wraps this as the user turn."""
    lines = [f"{LETTERS[i]}. {option}" for i, option in enumerate(doc["options"])]
    return doc["question"].strip() + "\n\n" + "\n".join(lines)


def choices_full(doc: dict) -> list[str]:
    """Med42's scoring: the full option texts."""
    return list(doc["options"])


def choices_letter(doc: dict) -> list[str]:
    """The harness default: the letters."""
    return list(LETTERS[: len(doc["options"])])


# ----------------------------------------------------------------------------- loading

def load_docs(dataset: str, split: str = "test", hub_path: Optional[str] = None, hub_name: Optional[str] = None,
              category: Optional[str] = None, subject: Optional[str] = None, local_default: Optional[str] = None,
              med42_data_files: Optional[dict] = None, **_metadata: Any) -> datasets.DatasetDict:
    """{split: normalized docs} from the local override, the task's local default, or the hub."""
    local = (med42_data_files or {}).get(dataset) or (local_default and str(RECIPE_DIR / local_default))
    if local:
        records = _read_local(dataset, Path(local).expanduser(), subject)
    elif hub_path:
        records = list(datasets.load_dataset(hub_path, hub_name, split=split))
    else:
        raise ValueError(f"the {dataset} task has no public copy in a known layout: give a local file with "
                         f"eval.data_files.{dataset}=<path> (README, evaluation)")
    if category is not None:  # MMLU-Pro: one category of the shared test set
        records = [r for r in records if r.get("category") == category]
    docs = _normalize_all(records)
    return datasets.DatasetDict({split: datasets.Dataset.from_list(docs)})


def _read_local(dataset: str, path: Path, subject: Optional[str]) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"eval.data_files.{dataset}={path}: no such file or folder")
    if dataset == "pubmedqa":
        return _read_pubmedqa(path)
    if dataset == "mmlu":
        return _read_mmlu_csv(path / f"{subject}_test.csv" if path.is_dir() else path)
    return _read_records(path)


def _read_records(path: Path) -> list[dict]:
    """jsonl, a json array, or parquet."""
    if path.suffix == ".parquet":
        return list(datasets.load_dataset("parquet", data_files=str(path), split="train"))
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def _read_mmlu_csv(path: Path) -> list[dict]:
    """MMLU's original release: headerless `question,A,B,C,D,answer_letter`."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{"question": row[0], "options": dict(zip("ABCD", row[1:5])), "answer_idx": row[5]}
                for row in csv.reader(handle)]


def _read_pubmedqa(path: Path) -> list[dict]:
    """PubMedQA upstream: ori_pqal.json (PMID -> record) and test_ground_truth.json (the 500 test PMIDs)."""
    folder = path if path.is_dir() else path.parent
    pqal = path if path.is_file() else _one(folder, "*ori_pqal.json")
    records = json.loads(pqal.read_text())
    truth = json.loads(_one(folder, "*test_ground_truth.json").read_text())
    return [{**records[pmid], "final_decision": decision} for pmid, decision in truth.items()]


def _one(folder: Path, pattern: str) -> Path:
    matches = sorted(folder.glob(pattern))
    if len(matches) != 1:
        raise FileNotFoundError(f"expected one {pattern} in {folder}, found {len(matches)}")
    return matches[0]


# ----------------------------------------------------------------------------- layouts

def _normalize_all(records: list[dict]) -> list[dict]:
    if not records:
        raise ValueError("the task's data has no documents")
    normalize = _layout_of(records[0])
    cop_base = _medmcqa_cop_base(records) if normalize is _from_medmcqa else 0
    return [normalize(r, cop_base) for r in records]


def _layout_of(record: dict) -> Callable[[dict, int], dict]:
    for columns, normalize in _LAYOUTS:
        if columns <= record.keys():
            return normalize
    raise ValueError(f"unknown MCQA layout with columns {sorted(record)}; known layouts: "
                     f"{[sorted(columns) for columns, _ in _LAYOUTS]}")


def _doc(question: str, options: list[str], answer: int) -> dict:
    options = [str(option).strip() for option in options]
    if not 0 <= answer < len(options):
        raise ValueError(f"gold answer index {answer} outside the {len(options)} options of {question[:80]!r}")
    return {"question": question.strip(), "options": options, "answer": answer}


def _from_medqa(r: dict, _: int) -> dict:  # MedQA (jind11) jsonl, MedAgents MedMCQA, MMLU csv: options {A..}
    letters = sorted(r["options"])
    return _doc(r["question"], [r["options"][k] for k in letters], letters.index(r["answer_idx"]))


def _from_medqa_hub(r: dict, _: int) -> dict:  # GBaker/MedQA-USMLE-4-options-hf (the harness's medqa_4options)
    return _doc(r["sent1"], [r[f"ending{i}"] for i in range(4)], int(r["label"]))


def _from_medmcqa(r: dict, cop_base: int) -> dict:  # MedMCQA upstream / openlifescienceai/medmcqa
    return _doc(r["question"], [r["opa"], r["opb"], r["opc"], r["opd"]], int(r["cop"]) - cop_base)


def _from_mmlu_hub(r: dict, _: int) -> dict:  # cais/mmlu
    return _doc(r["question"], list(r["choices"]), int(r["answer"]))


def _from_mmlu_pro(r: dict, _: int) -> dict:  # TIGER-Lab/MMLU-Pro
    return _doc(r["question"], list(r["options"]), int(r["answer_index"]))


def _from_pubmedqa(r: dict, _: int) -> dict:  # PubMedQA upstream / bigbio source schema (the harness's prompt)
    question = "Abstract: " + "\n".join(r["CONTEXTS"]) + "\nQuestion: " + r["QUESTION"]
    return _doc(question, PUBMEDQA_CHOICES, PUBMEDQA_CHOICES.index(r["final_decision"]))


def _medmcqa_cop_base(records: list[dict]) -> int:
    """MedMCQA copies disagree: the hub's `cop` is 0..3, the upstream release's 1..4. Decide from the data."""
    cops = {int(r["cop"]) for r in records}
    if 0 in cops and 4 not in cops:
        return 0
    if 4 in cops and 0 not in cops:
        return 1
    raise ValueError(f"MedMCQA `cop` values {sorted(cops)} do not tell 0-based from 1-based answers: give a file "
                     f"where they do, or convert it to the MedQA layout (options {{A..D}}, answer_idx)")


_LAYOUTS: list[tuple[set[str], Callable[[dict, int], dict]]] = [
    ({"question", "options", "answer_idx"}, _from_medqa),
    ({"sent1", "ending0", "label"}, _from_medqa_hub),
    ({"question", "opa", "opd", "cop"}, _from_medmcqa),
    ({"question", "options", "answer_index"}, _from_mmlu_pro),
    ({"question", "choices", "answer"}, _from_mmlu_hub),
    ({"QUESTION", "CONTEXTS", "final_decision"}, _from_pubmedqa),
]
