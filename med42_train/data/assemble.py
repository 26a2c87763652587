"""The `data` stage: the recipe's sources -> chat -> cleaning -> tokens -> sampled Arrow datasets + manifest + card.

Launch: med42 data experiment=demo run_dir=runs/demo      (plan only: med42 data --dry-run ...)

Per source, streaming and cached (data/build.py, data/cache.py): read records (bad ones per the source's
on_error policy) -> data.system_prompt -> PHI policy -> decontamination -> tokenize in batches -> length filter.
Then, over every source in recipe order: exact + near dedup (data/dedup_pass.py) -> sampling to each source's
`samples:`/`tokens:` target (data/sampling.py) -> the datasets the trainers read.

Writes <run_dir>/data/: tokenizer/, sft/ (input_ids, assistant_masks, source), preference/ (prompt_ids,
chosen_ids, rejected_ids, source, iteration), base_model/ (demo only), rejects/<source>.jsonl, manifest.json,
data_card.md, COMPLETE. For every source: read == kept + sum(dropped_by_reason).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import numpy as np
from datasets import Dataset, concatenate_datasets
from omegaconf import DictConfig

from med42_train.config import recipe_path
from med42_train.data.build import BuildSettings, build_source
from med42_train.data.cache import ROWS, SourceCache, content_hash, source_cache_key
from med42_train.data.card import log_to_wandb, render_card
from med42_train.data.clean.decontaminate import Decontaminator
from med42_train.data.dedup_pass import deduplicate
from med42_train.data.plan import format_plan, make_plan
from med42_train.data.recipe import Recipe, Source, load_recipe
from med42_train.data.report import (PhaseTimer, add_shares, log_table, manifest_figures, manifest_summary,
                                     source_row)
from med42_train.data.sampling import select_rows, source_rng
from med42_train.data.source_index import INDEX_FILE, write_source_index
from med42_train.data.screen import Screen, conversations
from med42_train.data.sources import Example, iter_examples
from med42_train.data.tokenize import ChatEncoder
from med42_train.models.demo import build_demo_model
from med42_train.models.tokenizer import demo_chat_format, load_base_tokenizer, train_demo_tokenizer
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import begin_stage, finish_stage, sha256_tree
from med42_train.runtime.wandb_run import start_run

log = get_logger()
OUTPUT_COLUMNS = {"sft": ["input_ids", "assistant_masks", "source"],
                  "preference": ["prompt_ids", "chosen_ids", "rejected_ids", "source", "iteration"]}
DATASET_FOLDER = {"sft": "sft", "preference": "preference"}
MINHASH_SEED = 1  # fixed: signatures are cached, and the recipe seed (sampling) must not invalidate them


def stage_inputs(cfg: DictConfig) -> dict[str, dict[str, str]]:
    return _inputs(_recipe(cfg))


def dry_run(cfg: DictConfig) -> str:
    """The plan table, computed without tokenizing the corpus or writing anything in the run dir."""
    encoder = None
    if cfg.model.name_or_path != "demo":  # the demo's tokenizer is trained by the stage itself
        try:
            encoder = ChatEncoder(load_base_tokenizer(cfg))
        except OSError as err:  # offline, gated or misspelled: the plan still helps, with character estimates
            log.warning("tokenizer %s unavailable (%s): estimating tokens as characters / 4",
                        cfg.model.name_or_path, str(err).splitlines()[0])
    return format_plan(make_plan(_recipe(cfg), encoder))


def run(cfg: DictConfig) -> None:
    recipe = _recipe(cfg)
    stage = begin_stage(cfg, "data", _inputs(recipe))
    if stage is None:
        return
    cfg, wandb_run = stage.cfg, start_run(stage.cfg, "data")

    timer = PhaseTimer()

    # ---- tokenizer and base model ----
    with timer("tokenizer"):
        tokenizer, base_model = _tokenizer_and_base_model(cfg, recipe, stage.dir)
        encoder = ChatEncoder(tokenizer)

    # ---- plan ----
    with timer("plan"):
        plan = make_plan(recipe, encoder)
    log.info("mixture plan:\n%s", format_plan(plan))

    # ---- per source: read, screen, tokenize (cached) ----
    caches, cache_hits = _build_sources(cfg, recipe, encoder, stage.dir, timer)

    # ---- dedup across sources, then sampling to targets, then the datasets ----
    rejects_dir = stage.dir / "rejects"
    rejects_dir.mkdir(exist_ok=True)
    sources = []
    for kind in ("sft", "preference"):
        kind_caches = [cache for cache in caches if cache.kind == kind]
        with timer("dedup"):
            dedup = deduplicate(kind_caches, recipe.clean, MINHASH_SEED)
        with timer("write"):
            selections = {cache.name: _select(cache, dedup[cache.name].keep, recipe) for cache in kind_caches}
            dataset = _write_dataset(kind_caches, selections, stage.dir / DATASET_FOLDER[kind], kind)
            if kind == "sft":  # per-source loss keys: once here, not at every SFT start on every rank
                write_source_index(dataset, stage.dir / INDEX_FILE)
        sources += [source_row(cache, recipe, dedup[cache.name], selections[cache.name], cache_hits[cache],
                               rejects_dir) for cache in kind_caches]
    add_shares(sources)

    # ---- manifest, data card, W&B ----
    phases = {"phase_s": timer.seconds, "phase_cpu_s": timer.cpu_seconds}
    summary = manifest_summary(cfg, recipe, sources, cache_hits, plan, stage.inputs) | phases
    (stage.dir / "data_card.md").write_text(render_card(summary))
    figures = manifest_figures(summary)
    wandb_run.log({f"data/{key}": value for key, value in figures.items() if isinstance(value, (int, float))})
    outputs = _outputs(stage.dir, base_model)
    manifest = finish_stage(stage, outputs, figures, wandb_run_id=wandb_run.id, **summary)
    log_to_wandb(wandb_run, sources, [stage.dir / "manifest.json", stage.dir / "data_card.md"])
    wandb_run.finish()
    log_table(manifest)


def _recipe(cfg: DictConfig) -> Recipe:
    return load_recipe(recipe_path(cfg), cfg.data.recipe_overrides)


def _inputs(recipe: Recipe) -> dict[str, dict[str, str]]:
    """The recipe file and every source and benchmark it names, with their content hashes."""
    located = {f"source:{s.name}": (s.path, s.hub) for s in recipe.sft + recipe.preference}
    located |= {f"benchmark:{b.name}": (b.path, b.hub) for b in recipe.clean.decontamination.benchmarks}
    inputs = {"recipe": _record(recipe.path)}
    for name, (path, hub) in located.items():
        inputs[name] = _record(path) if path is not None and path.exists() else {"hub": str(hub)}
    return inputs


def _record(path: Path) -> dict[str, str]:
    """Path and content hash of a file or folder, as manifests list inputs and outputs."""
    return {"path": str(path), "sha256": sha256_tree(path)}


# ---------------------------------------------------------------- tokenizer

def _tokenizer_and_base_model(cfg: DictConfig, recipe: Recipe, stage_dir: Path):
    if cfg.model.name_or_path == "demo":
        tokenizer = train_demo_tokenizer(_corpus(recipe), cfg.model.tiny.bpe_vocab_size, demo_chat_format(cfg.model))
        base_model = str(build_demo_model(cfg, tokenizer, stage_dir / "base_model"))
    else:
        tokenizer, base_model = load_base_tokenizer(cfg), str(cfg.model.name_or_path)
    tokenizer.save_pretrained(str(stage_dir / "tokenizer"))
    return tokenizer, base_model


def _corpus(recipe: Recipe):
    """Every message content of every source, streamed: the demo tokenizer's training text."""
    for source in recipe.sft + recipe.preference:
        for item in iter_examples(source):
            if isinstance(item, Example):
                yield from (m["content"] for c in conversations(item) for m in c)


# ---------------------------------------------------------------- per-source builds (cached)

def _build_sources(cfg: DictConfig, recipe: Recipe, encoder: ChatEncoder, stage_dir: Path, timer: PhaseTimer):
    """A complete cache per source (built if missing) and whether each was a cache hit."""
    cache_root = Path(cfg.data.cache_dir).resolve()
    shared = _shared_cache_parts(cfg, recipe, stage_dir)
    screen: Optional[Screen] = None  # the decontamination index is only built when some source needs a build
    caches, hits = [], {}
    for source in recipe.sft + recipe.preference:
        max_length = cfg.data.max_length if source.kind == "sft" else cfg.data.preference_max_length
        cache = SourceCache(cache_root, source.kind, source.name, source_cache_key(
            {**shared, "source": _source_entry(source), "max_length": max_length}))
        hits[cache] = cache.is_complete()
        log.info("source %s/%s: cache %s (%s)", source.kind, source.name, "hit" if hits[cache] else "miss", cache.dir)
        if not hits[cache]:
            with timer("decontamination_index"):
                screen = screen or Screen(recipe.clean, _decontaminator(recipe), MINHASH_SEED)
            with timer("build"):
                build_source(source, cache, encoder, screen,
                             BuildSettings(cfg.data.system_prompt, max_length, cfg.data.tokenize_batch_size))
        caches.append(cache)
    return caches, hits


def _shared_cache_parts(cfg: DictConfig, recipe: Recipe, stage_dir: Path) -> dict[str, Any]:
    """What decides every source's cached result besides the source itself."""
    clean = recipe.clean
    benchmarks = [{"name": b.name, "format": b.format, "format_options": b.format_options,
                   "content": content_hash(b.path if b.path is not None and b.path.exists() else b.hub)}
                  for b in clean.decontamination.benchmarks]
    return {"tokenizer": sha256_tree(stage_dir / "tokenizer"), "chat_template": _chat_template(stage_dir),
            "system_prompt": cfg.data.system_prompt, "phi_policy": clean.phi_policy,
            "ngram_words": clean.decontamination.ngram_words, "benchmarks": benchmarks,
            "signature": {"num_perm": clean.near_dedup.num_perm, "shingle_words": clean.near_dedup.shingle_words,
                          "enabled": clean.near_dedup.enabled, "seed": MINHASH_SEED}}


def _chat_template(stage_dir: Path) -> str:
    config = json.loads((stage_dir / "tokenizer" / "tokenizer_config.json").read_text())
    template_file = stage_dir / "tokenizer" / "chat_template.jinja"
    return config.get("chat_template") or (template_file.read_text() if template_file.is_file() else "")


def _source_entry(source: Source) -> dict[str, Any]:
    """The recipe entry minus the sampling targets (they act after the cache), plus the content hash."""
    entry = {k: v for k, v in asdict(source).items() if k not in ("samples", "tokens")}
    return {**entry, "content": content_hash(source.path if source.path is not None and source.path.exists()
                                             else source.hub)}


def _decontaminator(recipe: Recipe) -> Optional[Decontaminator]:
    spec = recipe.clean.decontamination
    if not spec.benchmarks:
        return None
    decontaminator = Decontaminator(spec.ngram_words)
    for benchmark in spec.benchmarks:
        items = ((item.record_id or item.position, _question_text(item))
                 for item in iter_examples(benchmark.as_source()) if isinstance(item, Example))
        decontaminator.add_benchmark(benchmark.name, items)
    return decontaminator


def _question_text(example: Example) -> str:
    """A benchmark item as the model would be asked it: the non-assistant turns (question and options)."""
    return "\n".join(m["content"] for m in example.messages if m["role"] == "user")


# ---------------------------------------------------------------- sampling and writing

def _select(cache: SourceCache, keep: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Cached row indices of the source's share of the mixture (after dedup, sampled to its target)."""
    source = next(s for s in recipe.sft + recipe.preference if s.name == cache.name and s.kind == cache.kind)
    kept_rows = np.flatnonzero(keep)
    supervised = cache.rows().column("num_supervised_tokens").to_numpy()[kept_rows]
    return kept_rows[select_rows(supervised, source.samples, source.tokens, source_rng(recipe.seed, source.name))]


def _write_dataset(caches: list[SourceCache], selections: dict[str, np.ndarray], out_dir: Path, kind: str):
    """The selected rows of every source, memory-mapped from the caches, written as one Arrow dataset."""
    parts = [Dataset.from_file(str(cache.dir / ROWS)).select_columns(OUTPUT_COLUMNS[kind])
             .select(selections[cache.name]) for cache in caches]
    parts = [part for part in parts if len(part)]
    dataset = concatenate_datasets(parts) if parts else Dataset.from_dict({c: [] for c in OUTPUT_COLUMNS[kind]})
    dataset.save_to_disk(str(out_dir))
    return dataset


# ---------------------------------------------------------------- manifest

def _outputs(stage_dir: Path, base_model: str) -> dict[str, Any]:
    outputs = {name: _record(stage_dir / folder) for name, folder in
               (("sft_dataset", "sft"), ("preference_dataset", "preference"), ("tokenizer", "tokenizer"),
                ("rejects", "rejects"), ("data_card", "data_card.md"), ("sft_source_index", INDEX_FILE))}
    outputs["base_model"] = _record(Path(base_model)) if Path(base_model).is_dir() else {"path": base_model}
    return outputs
