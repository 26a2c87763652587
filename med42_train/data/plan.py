"""The mixture plan, before any tokenization: per source, records available, target, sampling factor, estimated
tokens and share. `med42 data --dry-run` prints it; the data stage prints it first and keeps it in its manifest.

Token estimates come from the first PLAN_SAMPLE_SIZE converted records of each source, rendered in the chat
format: counted with the tokenizer when one is at hand, else as characters / 4 (the usual English BPE ratio;
the demo trains its tokenizer inside the data stage, so a dry run has none).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Optional

from med42_train.data.recipe import Recipe, Source
from med42_train.data.screen import conversations
from med42_train.data.sources import Example, SourceError, count_records, iter_examples
from med42_train.data.tokenize import ChatEncoder, render_llama3

PLAN_SAMPLE_SIZE = 256
CHARS_PER_TOKEN = 4.0


@dataclass
class PlanRow:
    kind: str
    source: str
    category: str
    records_available: Optional[int]
    target: str
    sampling_factor: Optional[float]
    est_samples: Optional[float]
    est_tokens: Optional[float]
    est_supervised_tokens: Optional[float]
    share: Optional[float] = None  # of the estimated supervised tokens of its kind
    note: str = ""
    error: str = ""  # why the source could not be read (printed under the table)


def make_plan(recipe: Recipe, encoder: Optional[ChatEncoder]) -> list[PlanRow]:
    rows = [_plan_row(source, encoder) for source in recipe.sft + recipe.preference]
    for kind in ("sft", "preference"):
        total = sum(row.est_supervised_tokens or 0 for row in rows if row.kind == kind)
        for row in rows:
            if row.kind == kind and total and row.est_supervised_tokens is not None:
                row.share = row.est_supervised_tokens / total
    return rows


def _plan_row(source: Source, encoder: Optional[ChatEncoder]) -> PlanRow:
    target = (f"{source.samples} samples" if source.samples is not None
              else f"{source.tokens} tokens" if source.tokens is not None else "all")
    try:
        available = count_records(source)
        tokens_per_sample, supervised_per_sample = _mean_tokens(source, encoder)
    except SourceError as err:
        return PlanRow(source.kind, source.name, source.category, None, target, None, None, None, None,
                       note="unavailable", error=str(err))
    if source.samples is not None:
        samples = float(source.samples)
    elif source.tokens is not None:
        samples = source.tokens / supervised_per_sample if supervised_per_sample else 0.0
    else:
        samples = float(available)
    return PlanRow(source.kind, source.name, source.category, available, target,
                   samples / available if available else None, samples, samples * tokens_per_sample,
                   samples * supervised_per_sample,
                   note="tokenizer" if encoder is not None else f"chars/{CHARS_PER_TOKEN:g}")


def _mean_tokens(source: Source, encoder: Optional[ChatEncoder]) -> tuple[float, float]:
    """(tokens, supervised tokens) per sample over the first PLAN_SAMPLE_SIZE converted records."""
    examples = [item for item in itertools.islice(iter_examples(source), PLAN_SAMPLE_SIZE)
                if isinstance(item, Example)]
    if not examples:
        return 0.0, 0.0
    if encoder is None:
        total = sum(len(render_llama3(c, "")[0]) for e in examples for c in conversations(e)) / CHARS_PER_TOKEN
        supervised = sum(len(m["content"]) + 1 for e in examples for c in conversations(e)
                         for m in c if m["role"] == "assistant") / CHARS_PER_TOKEN
        return total / len(examples), supervised / len(examples)
    if source.kind == "sft":
        ids, masks = encoder.encode_sft([e.messages for e in examples])
        return ids.lengths.mean(), masks.row_sums().mean()
    encoded = encoder.encode_preference([e.pair for e in examples])
    completions = encoded["chosen_ids"].lengths + encoded["rejected_ids"].lengths
    return (encoded["prompt_ids"].lengths + completions).mean(), completions.mean()


def format_plan(rows: list[PlanRow]) -> str:
    header = ("kind", "source", "category", "available", "target", "factor", "est. samples", "est. tokens",
              "est. sup. tokens", "share", "estimate")
    lines = [header] + [(r.kind, r.source, r.category, _num(r.records_available), r.target,
                         _num(r.sampling_factor, ".3g"), _num(r.est_samples), _num(r.est_tokens),
                         _num(r.est_supervised_tokens), _num(r.share, ".1%"), r.note) for r in rows]
    for kind in ("sft", "preference"):
        chosen = [r for r in rows if r.kind == kind]
        lines.append((kind, "TOTAL", "", _num(sum(r.records_available or 0 for r in chosen)), "", "",
                      _num(sum(r.est_samples or 0 for r in chosen)), _num(sum(r.est_tokens or 0 for r in chosen)),
                      _num(sum(r.est_supervised_tokens or 0 for r in chosen)), "", ""))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    table = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    errors = [f"- {r.kind}/{r.source}: {r.error}" for r in rows if r.error]
    return "\n".join(table + (["", "Unavailable sources:", *errors] if errors else []))


def plan_dicts(rows: list[PlanRow]) -> list[dict]:
    return [asdict(row) for row in rows]


def _num(value, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)
