"""The SFT source index, written once by the data stage and read at SFT start, equals hashing every sample."""

from __future__ import annotations

import json

import numpy as np
from datasets import Dataset, concatenate_datasets, load_from_disk

from med42_train.data.source_index import build_source_index, read_source_index, sample_key, write_source_index


def test_the_written_index_maps_every_sample_key_to_its_source(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"input_ids": rng.integers(0, 128_256, size=int(rng.integers(1, 50))).tolist(),
             "source": ["medqa", "flashcards", "dialogues"][i % 3]} for i in range(20_000)]
    # Several Arrow chunks, as concatenate_datasets of per-source caches gives: offsets do not start at 0.
    dataset = concatenate_datasets([Dataset.from_list(rows[:7_000]), Dataset.from_list(rows[7_000:])])
    names, index = read_source_index(write_source_index(dataset, tmp_path / "index.npz"))
    assert names == ["dialogues", "flashcards", "medqa"]
    assert len(index) == len({sample_key(row["input_ids"]) for row in rows})
    for row in rows[::997] + rows[-3:]:
        assert names[index[sample_key(row["input_ids"])]] == row["source"]
    assert (names, index) == build_source_index(dataset)


def test_the_data_stage_writes_the_index_and_sft_reads_it(demo_run):
    manifest = json.loads((demo_run / "data" / "manifest.json").read_text())
    record = manifest["outputs"]["sft_source_index"]
    assert record["sha256"] and record["path"].endswith("sft_source_index.npz")
    assert read_source_index(record["path"]) == build_source_index(load_from_disk(str(demo_run / "data" / "sft")))
    assert "hashing every sample now" not in (demo_run / "pipeline.log").read_text()
