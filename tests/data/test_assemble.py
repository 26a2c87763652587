"""The data stage: per-source counts that add up, rejects, cleaning drops, cache hits, sampling, manifest, card."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from datasets import load_from_disk
from transformers import AutoTokenizer

from med42_train.config import load_config
from med42_train.data import assemble
from tests.conftest import run_med42
from tests.data.assembly_support import (alpaca_records, data_config, save_fixed_tokenizer, write_jsonl,
                                         write_recipe)

MANIFEST_SOURCE_KEYS = {"kind", "source", "category", "read", "kept", "dropped_by_reason", "selected",
                        "sampling_factor", "num_tokens", "num_supervised_tokens", "share", "cache", "rejects_file"}


def _manifest(data_dir: Path) -> dict:
    return json.loads((data_dir / "manifest.json").read_text())


def _sources(data_dir: Path) -> dict[str, dict]:
    return {row["source"]: row for row in _manifest(data_dir)["sources"]}


def _assert_counts_add_up(row: dict) -> None:
    assert row["read"] == row["kept"] + sum(row["dropped_by_reason"].values()), row
    rejects = Path(row["rejects_file"]).read_text().splitlines()
    assert len(rejects) == sum(row["dropped_by_reason"].values())


@pytest.fixture(scope="module")
def fixed_tokenizer_dir(tmp_path_factory) -> Path:
    return save_fixed_tokenizer(tmp_path_factory.mktemp("fixed_tokenizer"))


# ---------------------------------------------------------------- the demo recipe

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("data_run")
    cfg = load_config([f"run_dir={run_dir}", "logger.wandb=false",
                       "data.system_prompt=You are a helpful medical assistant.", "data.max_length=200"])
    assemble.run(cfg)
    return run_dir / "data"


def test_counts_add_up_per_source_and_match_the_dataset(data_dir):
    manifest = _manifest(data_dir)
    for row in manifest["sources"]:
        assert MANIFEST_SOURCE_KEYS <= set(row)
        _assert_counts_add_up(row)
    sft_rows = [row for row in manifest["sources"] if row["kind"] == "sft"]
    assert any(row["dropped_by_reason"].get("too_long") for row in sft_rows)  # max_length=200 bites
    dataset = load_from_disk(str(data_dir / "sft"))
    assert len(dataset) == sum(r["selected"] for r in sft_rows) == manifest["figures"]["num_sft_samples"]
    assert sum(map(len, dataset["input_ids"])) == sum(r["num_tokens"] for r in sft_rows)
    assert sum(map(sum, dataset["assistant_masks"])) == sum(r["num_supervised_tokens"] for r in sft_rows)
    assert max(len(ids) for ids in dataset["input_ids"]) <= 200
    assert all(len(i) == len(m) for i, m in zip(dataset["input_ids"], dataset["assistant_masks"]))
    assert sum(r["share"] for r in sft_rows) == pytest.approx(1.0)
    assert set(manifest["outputs"]["sft_dataset"]) == {"path", "sha256"}
    assert manifest["peak_rss_mib"] > 0 and manifest["plan"]


def test_system_prompt_is_added_where_a_sample_has_none(data_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(data_dir / "tokenizer"))
    dataset = load_from_disk(str(data_dir / "sft"))
    texts = [tokenizer.decode(ids) for ids in dataset["input_ids"][:50]]
    assert all("<|start_header_id|>system<|end_header_id|>" in text for text in texts)
    flashcard = next(t for t, s in zip(texts, dataset["source"][:50]) if s == "medical_flashcards")
    assert "You are a helpful medical assistant." in flashcard


def test_data_card_shows_mixture_drops_decontamination_and_hashes(data_dir):
    card = (data_dir / "data_card.md").read_text()
    manifest = _manifest(data_dir)
    for row in manifest["sources"]:
        assert f"| {row['kind']} | {row['source']} | {row['category']} | {row['read']:,} | {row['kept']:,} |" in card
    for name, entry in manifest["decontamination"].items():
        assert f"| {name} | {entry['items_indexed']:,} | {entry['items_matched']:,} |" in card
    assert "## PHI / PII screen" in card and f"Policy: **{manifest['phi']['policy']}**" in card
    assert manifest["inputs"]["recipe"]["sha256"][:16] in card


# ---------------------------------------------------------------- bad input and cleaning drops

BENCHMARK_QUESTION = ("A 34-year-old man presents with crushing substernal chest pain radiating to the left arm "
                      "for two hours with ST elevation in leads II III and aVF. What is the most likely diagnosis?")


def _messy_source(folder: Path) -> tuple[Path, dict[str, int]]:
    """Clean records plus one planted case per reason; returns the file and the expected counts by reason."""
    clean = alpaca_records(12, seed=1)
    near = dict(clean[0], output=clean[0]["output"] + " today")  # one word more than an earlier record
    lines = [json.dumps(r) for r in clean] + [
        '{"instruction": "broken", "output": ',  # malformed_json
        json.dumps({"instruction": "no answer", "input": ""}),  # missing_field
        json.dumps({"instruction": "empty answer", "input": "", "output": "   \n"}),  # empty_turn
        json.dumps({"instruction": clean[1]["instruction"].lower().replace(" ", "  "), "input": "",
                    "output": clean[1]["output"] + "!!"}),  # exact_duplicate (case, punctuation)
        json.dumps(near),  # near_duplicate
        json.dumps({"instruction": "Write to me", "input": "", "output": "Mail jane.doe@example.com today."}),
        json.dumps({"instruction": BENCHMARK_QUESTION.lower(), "input": "", "output": "Inferior MI."}),
        json.dumps({"instruction": "Long", "input": "", "output": " ".join(["dose"] * 400)}),  # too_long
    ]
    path = folder / "messy.jsonl"
    path.write_bytes("\n".join(lines).encode() + b'\n{"instruction": "bad \xff byte", "output": "x"}\n')
    expected = {"malformed_json": 1, "missing_field": 1, "empty_turn": 1, "undecodable_bytes": 1,
                "exact_duplicate": 1, "near_duplicate": 1, "phi": 1, "contaminated:exam": 1, "too_long": 1}
    return path, expected


def test_every_bad_record_and_cleaning_drop_is_counted_and_written(tmp_path, fixed_tokenizer_dir):
    messy, expected = _messy_source(tmp_path)
    later = write_jsonl(tmp_path / "later.jsonl", alpaca_records(5, seed=2) + alpaca_records(12, seed=1)[3:4])
    exam = write_jsonl(tmp_path / "exam.jsonl", [{"question": BENCHMARK_QUESTION, "answer_idx": "A",
                                                  "options": {"A": "Inferior myocardial infarction",
                                                              "B": "Aortic dissection"}}])
    recipe = write_recipe(tmp_path, {"messy": {"path": "messy.jsonl", "format": "alpaca"},
                                     "later": {"path": "later.jsonl", "format": "alpaca"}},
                          clean={"phi": {"policy": "drop"},
                                 "decontamination": {"benchmarks": {"exam": {"path": str(exam), "format": "medqa"}}}})
    assemble.run(data_config(tmp_path / "run", recipe, fixed_tokenizer_dir, "data.max_length=200"))
    data_dir = tmp_path / "run" / "data"
    sources = _sources(data_dir)
    assert sources["messy"]["dropped_by_reason"] == expected
    assert sources["messy"]["read"] == 12 + 9 and sources["messy"]["kept"] == 12
    assert sources["later"]["dropped_by_reason"] == {"exact_duplicate": 1}  # the earlier source keeps it
    for row in sources.values():
        _assert_counts_add_up(row)
    rejects = [json.loads(line) for line in (data_dir / "rejects" / "messy.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in rejects} == set(expected)
    assert all(r["position"].startswith(str(messy)) for r in rejects)
    phi = next(r for r in rejects if r["reason"] == "phi")
    assert "[EMAIL]" in phi["raw"] and "jane.doe" not in phi["raw"]
    assert next(r for r in rejects if r["reason"] == "missing_field")["field"] == "output"
    report = _manifest(data_dir)["decontamination"]["exam"]
    assert (report["items_indexed"], report["items_matched"], report["samples_removed"]) == (1, 1, 1)
    assert _manifest(data_dir)["phi"]["hits_by_kind"] == {"email": 1}


# ---------------------------------------------------------------- cache

def _cache_states(data_dir: Path) -> dict[str, str]:
    return {name: row["cache"] for name, row in _sources(data_dir).items()}


def test_unchanged_sources_hit_the_cache_and_a_changed_one_is_rebuilt_alone(tmp_path, fixed_tokenizer_dir):
    write_jsonl(tmp_path / "a.jsonl", alpaca_records(20, seed=3))
    write_jsonl(tmp_path / "b.jsonl", alpaca_records(20, seed=4))
    recipe = write_recipe(tmp_path, {"a": {"path": "a.jsonl", "format": "alpaca"},
                                     "b": {"path": "b.jsonl", "format": "alpaca"}})
    runs = tmp_path / "runs"  # every run_dir below shares runs/.cache/data
    assemble.run(data_config(runs / "first", recipe, fixed_tokenizer_dir))
    assert _cache_states(runs / "first" / "data") == {"a": "miss", "b": "miss"}
    # A new run of the same mixture, with a different sampling target: nothing is re-tokenized.
    assemble.run(data_config(runs / "second", recipe, fixed_tokenizer_dir, "data.recipe_overrides=['sft.a.samples=5']"))
    assert _cache_states(runs / "second" / "data") == {"a": "hit", "b": "hit"}
    write_jsonl(tmp_path / "b.jsonl", alpaca_records(21, seed=4))
    assemble.run(data_config(runs / "third", recipe, fixed_tokenizer_dir))
    assert _cache_states(runs / "third" / "data") == {"a": "hit", "b": "miss"}
    assert _sources(runs / "third" / "data")["b"]["read"] == 21
    first, third = (load_from_disk(str(runs / name / "data" / "sft")) for name in ("first", "third"))
    assert first.filter(lambda r: r["source"] == "a")["input_ids"] == \
        third.filter(lambda r: r["source"] == "a")["input_ids"]


# ---------------------------------------------------------------- sampling

def test_sampling_to_samples_and_to_supervised_tokens(tmp_path, fixed_tokenizer_dir):
    write_jsonl(tmp_path / "up.jsonl", alpaca_records(10, seed=5))
    write_jsonl(tmp_path / "down.jsonl", alpaca_records(30, seed=6))
    write_jsonl(tmp_path / "budget.jsonl", alpaca_records(30, seed=7))
    recipe = write_recipe(tmp_path, {"up": {"path": "up.jsonl", "format": "alpaca", "samples": 25},
                                     "down": {"path": "down.jsonl", "format": "alpaca", "samples": 12},
                                     "budget": {"path": "budget.jsonl", "format": "alpaca", "tokens": 500}})
    assemble.run(data_config(tmp_path / "run", recipe, fixed_tokenizer_dir))
    sources = _sources(tmp_path / "run" / "data")
    assert (sources["up"]["selected"], sources["up"]["sampling_factor"]) == (25, 2.5)
    assert (sources["down"]["selected"], sources["down"]["sampling_factor"]) == (12, 0.4)
    dataset = load_from_disk(str(tmp_path / "run" / "data" / "sft"))
    up_rows = [tuple(ids) for ids, source in zip(dataset["input_ids"], dataset["source"]) if source == "up"]
    assert len(set(up_rows)) == 10 and max(map(up_rows.count, up_rows)) == 3  # 2 whole copies + 5 drawn
    budget_masks = [m for m, source in zip(dataset["assistant_masks"], dataset["source"]) if source == "budget"]
    supervised = sorted(map(sum, budget_masks))
    assert sum(supervised) >= 500 > sum(supervised) - supervised[-1]  # the fewest rows that reach the budget
    assert sources["budget"]["num_supervised_tokens"] == sum(supervised)


# ---------------------------------------------------------------- bounded memory

def test_peak_memory_does_not_grow_with_corpus_size(tmp_path, fixed_tokenizer_dir):
    """Peak RSS of the stage at 1x and 4x the corpus (fresh processes). Holding the extra 1200 texts and their
    token lists in Python would add ~30 MiB; streaming adds only the exact-dedup index (16 bytes a sample).
    Near-dedup is off here: its LSH index grows by design (a few hundred bytes a sample, see dedup_pass.py)."""
    peaks = {}
    for scale in (1, 4):
        folder = tmp_path / f"x{scale}"
        folder.mkdir()
        write_jsonl(folder / "big.jsonl", alpaca_records(400 * scale, seed=8, num_words=300))
        recipe = write_recipe(folder, {"big": {"path": "big.jsonl", "format": "alpaca"}},
                              clean={"near_dedup": {"enabled": False}})
        run_med42(["data", f"run_dir={folder / 'run'}", f"data.recipe={recipe}", "logger.wandb=false",
                   f"model.name_or_path={fixed_tokenizer_dir}", "data.max_length=2048",
                   "data.tokenize_batch_size=50"])  # both scales hold full batches: same peak per batch
        peaks[scale] = _manifest(folder / "run" / "data")["peak_rss_mib"]
        assert _sources(folder / "run" / "data")["big"]["kept"] == 400 * scale
    print(f"peak RSS: 1x {peaks[1]:.0f} MiB, 4x {peaks[4]:.0f} MiB")
    assert peaks[4] - peaks[1] < 12, peaks


# ---------------------------------------------------------------- W&B

def test_wandb_gets_the_per_source_table_and_the_manifest_artifact(tmp_path, fixed_tokenizer_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    write_jsonl(tmp_path / "a.jsonl", alpaca_records(8, seed=9))
    recipe = write_recipe(tmp_path, {"a": {"path": "a.jsonl", "format": "alpaca"}})
    cfg = data_config(tmp_path / "run", recipe, fixed_tokenizer_dir, "logger.wandb=true")
    assemble.run(cfg)
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    (table_file,) = run.glob("files/media/table/data/sources_*.table.json")
    table = json.loads(table_file.read_text())
    row = dict(zip(table["columns"], table["data"][0]))
    assert (row["source"], row["read"], row["kept"], row["cache"]) == ("a", 8, 8, "miss")
    assert _eventually_contains(next(run.glob("run-*.wandb")), [b"data-manifest", b"data_card.md"])


def _eventually_contains(path: Path, needles: list[bytes], timeout_s: float = 30.0) -> bool:
    """wandb's service process may still be flushing the offline record file when finish() returns."""
    deadline = time.monotonic() + timeout_s
    while not all(needle in path.read_bytes() for needle in needles):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_a_bad_record_under_on_error_fail_stops_the_stage_naming_file_line_and_field(tmp_path, fixed_tokenizer_dir,
                                                                                     capsys):
    from med42_train.cli import main

    write_jsonl(tmp_path / "a.jsonl", alpaca_records(3, seed=10) + [{"instruction": "q", "input": ""}])
    recipe = write_recipe(tmp_path, {"a": {"path": "a.jsonl", "format": "alpaca", "on_error": "fail"}})
    code = main(["data", f"run_dir={tmp_path / 'run'}", f"data.recipe={recipe}", "logger.wandb=false",
                 f"model.name_or_path={fixed_tokenizer_dir}"])
    error = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'a.jsonl'}:4" in error and "'output'" in error and "missing_field" in error
    assert not (tmp_path / "run" / "data" / "COMPLETE").exists()
    assert not any((tmp_path / ".cache" / "data" / "sft").iterdir())  # no half-built cache is left behind
