"""SFT start-up: the per-source index hashed from the dataset at every start (before) vs read from the file the
data stage wrote once (after), side by side on one corpus; and what writing it adds to the data stage.

    PYTHONPATH=. python benchmarks/bench_source_index.py [--num-tokens 20000000]

The corpus is synthetic token ids with SFT-like lengths (64..2048 tokens, mean ~1k, Llama 3's vocabulary), saved
with datasets and memory-mapped back, as the SFT stage reads the data stage's output. Times scale with tokens
(hashing) and with samples (reading), so the projection per 1B tokens is printed too.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, load_from_disk

from med42_train.data.source_index import build_source_index, read_source_index, sample_key, write_source_index


def corpus(num_tokens: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    rows, total = {"input_ids": [], "source": []}, 0
    while total < num_tokens:
        length = int(rng.integers(64, 2048))
        rows["input_ids"].append(rng.integers(0, 128_256, size=length, dtype=np.int32))
        rows["source"].append(f"source_{len(rows['source']) % 22}")
        total += length
    return Dataset.from_dict(rows)


def hashed_at_start(dataset) -> tuple[list[str], dict[bytes, int]]:
    """What SFT start did before the data stage wrote the index (train/metrics.py build_source_index, as it was)."""
    names = sorted(set(dataset["source"]))
    ids = {name: i for i, name in enumerate(names)}
    index = {}
    for batch in dataset.select_columns(["input_ids", "source"]).iter(batch_size=1024):
        for token_ids, source in zip(batch["input_ids"], batch["source"]):
            index[sample_key(token_ids)] = ids[source]
    return names, index


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-tokens", type=int, default=20_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus(args.num_tokens).save_to_disk(f"{tmp}/sft")
        dataset = load_from_disk(f"{tmp}/sft")
        num_tokens = pc.sum(pc.list_value_length(dataset.data.table["input_ids"])).as_py()
        before, before_s = timed(hashed_at_start, dataset)
        fallback, fallback_s = timed(build_source_index, dataset)
        _, write_s = timed(write_source_index, dataset, f"{tmp}/sft_source_index.npz")
        after, after_s = timed(read_source_index, f"{tmp}/sft_source_index.npz")
    assert after == before == fallback, "the index read back differs from the one hashed from the dataset"
    per_billion = 1e9 / num_tokens
    print(f"corpus: {len(dataset):,} samples, ~{num_tokens / 1e6:.0f} M tokens")
    print(f"before (hash every sample at SFT start, every rank): {before_s:.2f} s -> {before_s * per_billion / 60:.1f} "
          f"min per 1B tokens")
    print(f"after (read the data stage's index at SFT start):     {after_s:.2f} s -> {after_s * per_billion / 60:.1f} "
          f"min per 1B tokens")
    print(f"start-up ratio after / before: {after_s / before_s:.3f}")
    print(f"fallback for an old data stage (vectorised hashing at start): {fallback_s:.2f} s")
    print(f"written once by the data stage: {write_s:.2f} s ({write_s * per_billion / 60:.1f} min per 1B tokens)")


if __name__ == "__main__":
    main()
