"""Throughput of the cleaning steps (med42_train/data/clean) on real texts, in normalized words per CPU second.

    PYTHONPATH=. python benchmarks/bench_clean.py [--realdata ../shared/realdata] [--repeat 3]

Texts: the wikidoc + ChatDoctor files of ../shared/realdata (4000 texts, ~364k words), repeated --copies times.
Decontamination indexes MedQA 4-option test, PubMedQA test (500 ids) and the six MMLU medical tests. CPU time
(time.process_time) and the best of --repeat runs, because this machine is shared and wall time is noisy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

from med42_train.data.clean import Decontaminator, ExactDedup, NearDedup, PhiScanner, normalize_text
from tests.data.clean.realtexts import (MMLU_SUBJECTS, format_mcqa, read_alpaca_texts, read_medqa, read_mmlu,
                                        read_pubmedqa_test)

BATCH_SIZE = 256


def index_benchmarks(realdata: Path) -> Decontaminator:
    found = Decontaminator(ngram_words=13)
    medqa = read_medqa(realdata / "medqa_usmle_4options_phrases_no_exclude_test.jsonl")
    found.add_benchmark("medqa_test", [(item_id, (q, *options)) for item_id, q, options in medqa])
    found.add_benchmark("pubmedqa_test", read_pubmedqa_test(realdata))
    for subject in MMLU_SUBJECTS:
        items = read_mmlu(realdata / "mmlu_medical" / f"{subject}_test.csv")
        found.add_benchmark(f"mmlu_{subject}", [(i, format_mcqa(q, options)) for i, q, options in items])
    return found


def batched(fn: Callable[[list[str]], object]) -> Callable[[list[str]], None]:
    def run(texts: list[str]) -> None:
        for start in range(0, len(texts), BATCH_SIZE):
            fn(texts[start:start + BATCH_SIZE])
    return run


def per_text(fn: Callable[[str], object]) -> Callable[[list[str]], None]:
    def run(texts: list[str]) -> None:
        for text in texts:
            fn(text)
    return run


def best_cpu_seconds(step: Callable[[list[str]], None], texts: list[str], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        start = time.process_time()
        step(texts)
        timings.append(time.process_time() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/realdata")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copies", type=int, default=2)
    args = parser.parse_args()
    texts = (read_alpaca_texts(args.realdata / "medalpaca_wikidoc_patient_information_2000.json")
             + read_alpaca_texts(args.realdata / "chatdoctor_genmedgpt5k_2000.json")) * args.copies
    num_words = sum(len(normalize_text(text).split()) for text in texts)
    start = time.process_time()
    decontaminator = index_benchmarks(args.realdata)
    decontaminator.match("warm-up: builds the lookup tables")
    print(f"index: 2872 benchmark items in {time.process_time() - start:.2f} CPU s; {len(texts)} texts, "
          f"{num_words} words")
    near = NearDedup(threshold=0.85, num_perm=128, shingle_words=5)
    steps = {
        "normalize_text": per_text(normalize_text),
        "ExactDedup.key": per_text(ExactDedup.key),
        "NearDedup.signature (per text)": per_text(near.signature),
        f"NearDedup.signatures (batches of {BATCH_SIZE})": batched(near.signatures),
        "Decontaminator.match (per text)": per_text(decontaminator.match),
        f"Decontaminator.match_many (batches of {BATCH_SIZE})": batched(decontaminator.match_many),
        "PhiScanner.scan": per_text(PhiScanner().scan),
    }
    print(f"{'step':48s} {'CPU s':>7s} {'words/s':>12s}")
    for name, step in steps.items():
        seconds = best_cpu_seconds(step, texts, args.repeat)
        print(f"{name:48s} {seconds:7.2f} {num_words / seconds:12,.0f}")


if __name__ == "__main__":
    main()
