"""The data stage's report: the per-source table (with its rejects file), the decontamination and PHI reports,
the manifest's figures, and the log lines. Everything here reads the per-source caches and dedup results; nothing
here changes what goes into the datasets.
"""

from __future__ import annotations

import itertools
import json
import resource
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from med42_train.data.cache import SourceCache
from med42_train.data.dedup_pass import DedupResult
from med42_train.data.plan import plan_dicts
from med42_train.data.recipe import Recipe
from med42_train.data.sources import Example, iter_examples
from med42_train.runtime.log import get_logger

log = get_logger()


class PhaseTimer:
    """Wall and CPU seconds per phase of the stage (summed over repeats), for the manifest and the benchmark.
    CPU seconds are the process's, all threads (the tokenizer's included): on a shared machine they vary far
    less than wall seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        start, start_cpu = time.perf_counter(), time.process_time()
        yield
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start
        self.cpu_seconds[phase] = self.cpu_seconds.get(phase, 0.0) + time.process_time() - start_cpu


def source_row(cache: SourceCache, recipe: Recipe, dedup: DedupResult, selected: np.ndarray, hit: bool,
                rejects_dir: Path) -> dict[str, Any]:
    """The manifest's per-source entry; also writes rejects/<source>.jsonl (build rejects + dedup drops)."""
    stats = cache.stats()
    source = next(s for s in recipe.sft + recipe.preference if s.name == cache.name and s.kind == cache.kind)
    dropped = dict(stats["dropped_by_reason"])
    for reason, count in dedup.counts.items():
        dropped[reason] = dropped.get(reason, 0) + count
    kept = int(dedup.keep.sum())
    assert stats["read"] == kept + sum(dropped.values()), (
        f"source {cache.name}: read {stats['read']} != kept {kept} + dropped {dropped}")
    rejects_file = _write_rejects(cache, dedup, rejects_dir)
    rows = cache.rows()
    return {"kind": cache.kind, "source": cache.name, "category": source.category, "read": stats["read"],
            "kept": kept, "dropped_by_reason": dropped, "selected": len(selected),
            "sampling_factor": len(selected) / kept if kept else 0.0,
            "num_tokens": int(rows.column("num_tokens").to_numpy()[selected].sum()),
            "num_supervised_tokens": int(rows.column("num_supervised_tokens").to_numpy()[selected].sum()),
            "target": {"samples": source.samples, "tokens": source.tokens}, "cache": "hit" if hit else "miss",
            "cache_dir": str(cache.dir), "rejects_file": str(rejects_file),
            "phi": stats["phi"], "contamination": stats["contamination"]}


def _write_rejects(cache: SourceCache, dedup: DedupResult, rejects_dir: Path) -> Path:
    path = rejects_dir / f"{cache.name}.jsonl"
    shutil.copyfile(cache.dir / "rejects.jsonl", path)
    if dedup.dropped:
        rows = cache.rows().select(["position", "record_id"])
        positions, record_ids = rows.column("position"), rows.column("record_id")
        with open(path, "a", encoding="utf-8") as handle:
            for row, reason, earlier in dedup.dropped:
                line = {"position": positions[row].as_py(), "record_id": record_ids[row].as_py(), "reason": reason,
                        "field": None, "raw": f"duplicate of {earlier}" if earlier else "exact duplicate"}
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def add_shares(sources: list[dict[str, Any]]) -> None:
    for kind in ("sft", "preference"):
        total = sum(row["num_supervised_tokens"] for row in sources if row["kind"] == kind)
        for row in sources:
            if row["kind"] == kind:
                row["share"] = row["num_supervised_tokens"] / total if total else 0.0


def manifest_summary(cfg, recipe: Recipe, sources, cache_hits, plan, inputs) -> dict[str, Any]:
    """What the manifest (and the data card) report beyond the stage contract's fields."""
    return {"sources": sources, "plan": plan_dicts(plan),
            "decontamination": _decontamination_report(recipe, sources),
            "phi": _phi_report(recipe, sources),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cache": {"dir": str(Path(cfg.data.cache_dir).resolve()), "hits": sum(cache_hits.values()),
                      "misses": len(cache_hits) - sum(cache_hits.values())},
            "recipe": {"name": recipe.name, "path": str(recipe.path), "sha256": inputs["recipe"]["sha256"],
                       "seed": recipe.seed, "overrides": list(recipe.overrides),
                       "clean": json.loads(json.dumps(asdict(recipe.clean), default=str))},
            "hashes": {name: record for name, record in inputs.items()}}


def _decontamination_report(recipe: Recipe, sources: list[dict[str, Any]]) -> dict[str, Any]:
    """Per benchmark: items indexed, distinct items matched, training samples removed, examples."""
    report = {}
    for benchmark in recipe.clean.decontamination.benchmarks:
        found = [row["contamination"].get(benchmark.name) for row in sources]
        found = [entry for entry in found if entry]
        report[benchmark.name] = {
            "items_indexed": _count_items(benchmark),
            "items_matched": len({item for entry in found for item in entry["item_ids"]}),
            "samples_removed": sum(entry["samples_removed"] for entry in found),
            "examples": list(itertools.islice((e for entry in found for e in entry["examples"]), 5))}
    return report


def _count_items(benchmark) -> int:
    return sum(isinstance(item, Example) for item in iter_examples(benchmark.as_source()))


def _phi_report(recipe: Recipe, sources: list[dict[str, Any]]) -> dict[str, Any]:
    hits: dict[str, int] = {}
    for row in sources:
        for kind, count in row["phi"]["hits_by_kind"].items():
            hits[kind] = hits.get(kind, 0) + count
    return {"policy": recipe.clean.phi_policy, "samples_with_phi": sum(r["phi"]["samples_with_phi"] for r in sources),
            "hits_by_kind": hits, "by_source": {r["source"]: r["phi"] for r in sources if r["phi"]["samples_with_phi"]}}


def manifest_figures(summary: dict[str, Any]) -> dict[str, Any]:
    by_kind = {kind: [r for r in summary["sources"] if r["kind"] == kind] for kind in ("sft", "preference")}
    return {"num_sft_samples": sum(r["selected"] for r in by_kind["sft"]),
            "num_preference_pairs": sum(r["selected"] for r in by_kind["preference"]),
            "num_sft_tokens": sum(r["num_tokens"] for r in by_kind["sft"]),
            "num_sft_supervised_tokens": sum(r["num_supervised_tokens"] for r in by_kind["sft"]),
            "peak_rss_mib": summary["peak_rss_mib"], "cache_hits": summary["cache"]["hits"],
            "cache_misses": summary["cache"]["misses"],
            "sft_sources": {r["source"]: _counts(r) for r in by_kind["sft"]},
            "preference_sources": {r["source"]: _counts(r) for r in by_kind["preference"]}}


def _counts(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("read", "kept", "dropped_by_reason", "selected", "sampling_factor", "num_tokens",
            "num_supervised_tokens", "share", "cache")
    return {key: row[key] for key in keys}


def log_table(manifest: dict[str, Any]) -> None:
    for row in manifest["sources"]:
        log.info("%-10s %-24s read %8d kept %8d selected %8d tokens %11d dropped %s", row["kind"], row["source"],
                 row["read"], row["kept"], row["selected"], row["num_tokens"], row["dropped_by_reason"] or "-")
    log.info("peak RSS %.0f MiB; cache hits %d / %d", manifest["peak_rss_mib"], manifest["cache"]["hits"],
             manifest["cache"]["hits"] + manifest["cache"]["misses"])
