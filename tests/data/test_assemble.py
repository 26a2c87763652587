"""The data stage on the demo recipe: one pass, per-source counts that add up, masks aligned, system prompts."""

from __future__ import annotations

import json

import pytest
from datasets import load_from_disk
from transformers import AutoTokenizer

from med42_train.config import load_config
from med42_train.data import assemble


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("data_run")
    cfg = load_config([f"run_dir={run_dir}", "logger.wandb=false",
                       "data.system_prompt=You are a helpful medical assistant.", "data.max_length=200",
                       "sft.tokens_per_step=1600"])  # 8 rows of 200 tokens, so the SFT batch still splits
    assemble.run(cfg)
    return run_dir / "data"


def test_counts_add_up_per_source_and_match_the_dataset(data_dir):
    manifest = json.loads((data_dir / "manifest.json").read_text())
    sources = manifest["figures"]["sft_sources"]
    for counts in sources.values():
        assert counts["read"] == counts["kept"] + counts.get("dropped_too_long", 0)
    assert any(counts.get("dropped_too_long") for counts in sources.values())  # max_length=200 bites
    dataset = load_from_disk(str(data_dir / "sft"))
    assert len(dataset) == sum(c["kept"] for c in sources.values()) == manifest["figures"]["num_sft_samples"]
    assert max(len(ids) for ids in dataset["input_ids"]) <= 200
    assert all(len(i) == len(m) for i, m in zip(dataset["input_ids"], dataset["assistant_masks"]))
    assert set(manifest["outputs"]["sft_dataset"]) == {"path", "sha256"}


def test_system_prompt_is_added_where_a_sample_has_none(data_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(data_dir / "tokenizer"))
    dataset = load_from_disk(str(data_dir / "sft"))
    texts = [tokenizer.decode(ids) for ids in dataset["input_ids"][:50]]
    assert all("<|start_header_id|>system<|end_header_id|>" in text for text in texts)
    flashcard = next(t for t, s in zip(texts, dataset["source"][:50]) if s == "medical_flashcards")
    assert "You are a helpful medical assistant." in flashcard
