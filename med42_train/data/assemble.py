"""The `data` stage: read the recipe's sources, convert to chat, tokenize once, write Arrow datasets.

Writes <run_dir>/data/: tokenizer/ (with the training chat template), sft/ (input_ids, assistant_masks, source),
preference/ (prompt_ids, chosen_ids, rejected_ids, source), base_model/ for the embedded demo, manifest.json.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from datasets import Dataset
from omegaconf import DictConfig
from tqdm import tqdm

from med42_train.config import recipe_path
from med42_train.data.recipe import Recipe, Source, load_recipe, select
from med42_train.data.sources import Rejected, iter_examples
from med42_train.data.tokenize import tokenize_preference, tokenize_sft
from med42_train.models.demo import build_demo_model
from med42_train.models.tokenizer import load_base_tokenizer, train_demo_tokenizer
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import begin_stage, finish_stage, sha256_tree
from med42_train.runtime.wandb_run import start_run

log = get_logger()


def stage_inputs(cfg: DictConfig) -> dict[str, dict[str, str]]:
    return _inputs(load_recipe(recipe_path(cfg), cfg.data.recipe_overrides))


def run(cfg: DictConfig) -> None:
    recipe = load_recipe(recipe_path(cfg), cfg.data.recipe_overrides)
    stage = begin_stage(cfg, "data", _inputs(recipe))
    if stage is None:
        return
    cfg, wandb_run = stage.cfg, start_run(stage.cfg, "data")

    # ---- converted records (messages), per source ----
    system_prompt = cfg.data.system_prompt
    sft_messages = {s.name: [_with_system_prompt(messages, system_prompt)
                             for messages in _convert(s, recipe)]
                    for s in recipe.sft}
    pref_pairs = {s.name: [{**pair, "prompt": _with_system_prompt(pair["prompt"], system_prompt)}
                           for pair in _convert(s, recipe)]
                  for s in recipe.preference}

    # ---- tokenizer and base model ----
    if cfg.model.name_or_path == "demo":
        tokenizer = train_demo_tokenizer(_corpus(sft_messages, pref_pairs), cfg.model.tiny.bpe_vocab_size)
        base_model = str(build_demo_model(cfg, tokenizer, stage.dir / "base_model"))
    else:
        tokenizer, base_model = load_base_tokenizer(cfg), str(cfg.model.name_or_path)
    tokenizer.save_pretrained(str(stage.dir / "tokenizer"))

    # ---- tokenize once, write ----
    sft_table, sft_stats = _tokenize_sft(tokenizer, sft_messages, cfg.data.max_length)
    pref_table, pref_stats = _tokenize_preference(tokenizer, pref_pairs, cfg.data.preference_max_length)
    Dataset.from_dict(sft_table).save_to_disk(str(stage.dir / "sft"))
    Dataset.from_dict(pref_table).save_to_disk(str(stage.dir / "preference"))

    figures = {"sft_sources": sft_stats, "preference_sources": pref_stats,
               "num_sft_samples": len(sft_table["input_ids"]), "num_preference_pairs": len(pref_table["prompt_ids"])}
    _log_figures(wandb_run, figures)
    outputs = {name: _record(stage.dir / folder) for name, folder in
               (("sft_dataset", "sft"), ("preference_dataset", "preference"), ("tokenizer", "tokenizer"))}
    outputs["base_model"] = _record(Path(base_model)) if Path(base_model).is_dir() else {"path": base_model}
    finish_stage(stage, outputs, figures, recipe=recipe.name, wandb_run_id=wandb_run.id)
    wandb_run.finish()


def _inputs(recipe: Recipe) -> dict[str, dict[str, str]]:
    """The recipe file and every source file it names, with their content hashes."""
    sources = {f"source:{s.name}": _record(s.path) if s.path and s.path.exists() else {"hub": str(s.hub)}
               for s in recipe.sft + recipe.preference}
    return {"recipe": _record(recipe.path), **sources}


def _record(path: Path) -> dict[str, str]:
    """Path and content hash of a file or folder, as manifests list inputs and outputs."""
    return {"path": str(path), "sha256": sha256_tree(path)}


def _with_system_prompt(messages: list[dict[str, str]], system_prompt: str | None) -> list[dict[str, str]]:
    """Prepend data.system_prompt to a conversation that has no system turn of its own."""
    if not system_prompt or messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def _convert(source: Source, recipe: Recipe) -> list[Any]:
    """Every record of a source through its adapter (bad ones per the source's on_error), then sampled."""
    converted = [item.messages if source.kind == "sft" else item.pair
                 for item in tqdm(iter_examples(source), desc=f"read {source.name}", leave=False)
                 if not isinstance(item, Rejected)]
    if not converted:
        raise ValueError(f"{source.path}: no records")
    return select(converted, source.samples, recipe.seed)


def _corpus(sft_messages: dict, pref_pairs: dict):
    for conversations in sft_messages.values():
        for messages in conversations:
            yield from (m["content"] for m in messages)
    for pairs in pref_pairs.values():
        for pair in pairs:
            yield from (m["content"] for side in ("prompt", "chosen", "rejected") for m in pair[side])


def _tokenize_sft(tokenizer, sft_messages: dict, max_length: int):
    table: dict[str, list] = {"input_ids": [], "assistant_masks": [], "source": []}
    stats = {}
    for name, conversations in sft_messages.items():
        counts = Counter(read=len(conversations))
        for messages in tqdm(conversations, desc=f"tokenize {name}", leave=False):
            input_ids, mask = tokenize_sft(tokenizer, messages)
            if len(input_ids) > max_length:
                counts["dropped_too_long"] += 1
                continue
            table["input_ids"].append(input_ids)
            table["assistant_masks"].append(mask)
            table["source"].append(name)
            counts.update(kept=1, num_tokens=len(input_ids), num_supervised_tokens=sum(mask))
        stats[name] = dict(counts)
    return table, stats


def _tokenize_preference(tokenizer, pref_pairs: dict, max_length: int):
    table: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": [], "source": []}
    stats = {}
    for name, pairs in pref_pairs.items():
        counts = Counter(read=len(pairs))
        for pair in tqdm(pairs, desc=f"tokenize {name}", leave=False):
            ids = tokenize_preference(tokenizer, pair)
            longest = len(ids["prompt_ids"]) + max(len(ids["chosen_ids"]), len(ids["rejected_ids"]))
            if longest > max_length:
                counts["dropped_too_long"] += 1
                continue
            for key, value in ids.items():
                table[key].append(value)
            table["source"].append(name)
            counts.update(kept=1)
        stats[name] = dict(counts)
    return table, stats


def _log_figures(wandb_run, figures: dict) -> None:
    metrics = {"data/num_sft_samples": figures["num_sft_samples"],
               "data/num_preference_pairs": figures["num_preference_pairs"]}
    for group in ("sft_sources", "preference_sources"):
        for source, counts in figures[group].items():
            metrics |= {f"data/{source}/{key}": value for key, value in counts.items()}
    wandb_run.log(metrics)
    for source, counts in figures["sft_sources"].items():
        log.info("sft source %-20s %s", source, counts)
