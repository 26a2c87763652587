"""Per-sample screening of one source: system prompt, PHI policy, decontamination, and the dedup fingerprints.

Everything here decides per sample (decontamination and fingerprints run a batch at a time, vectorized, on one
WordBatch: each text is normalized and word-hashed once), so its result can be cached per source. Deduplication itself
(which needs every source, in recipe order) runs later over the fingerprints computed here (data/dedup_pass.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from med42_train.data.clean.decontaminate import Decontaminator
from med42_train.data.clean.dedup import ExactDedup, NearDedup
from med42_train.data.clean.normalize import WordBatch
from med42_train.data.clean.phi import PhiScanner
from med42_train.data.formats import Messages
from med42_train.data.recipe import CleanSpec
from med42_train.data.sources import Example

MAX_EXAMPLES = 5  # matched n-grams / positions kept per report entry: enough to judge, small enough to read


def conversations(example: Example) -> list[Messages]:
    """The message lists of an SFT example, or of a preference pair's prompt, chosen and rejected."""
    if example.messages is not None:
        return [example.messages]
    return [example.pair[side] for side in ("prompt", "chosen", "rejected")]


def sample_text(example: Example) -> str:
    """What cleaning looks at: every non-system turn (a shared system prompt would make all samples alike)."""
    return "\n".join(m["content"] for messages in conversations(example) for m in messages if m["role"] != "system")


def with_system_prompt(example: Example, system_prompt: Optional[str]) -> Example:
    """data.system_prompt prepended to a conversation (or a pair's prompt) that has no system turn of its own."""
    if not system_prompt:
        return example
    def prepend(messages: Messages) -> Messages:
        if messages and messages[0]["role"] == "system":
            return messages
        return [{"role": "system", "content": system_prompt}, *messages]
    if example.messages is not None:
        return replace(example, messages=prepend(example.messages))
    return replace(example, pair={**example.pair, "prompt": prepend(example.pair["prompt"])})


@dataclass
class ScreenReport:
    """What screening found in one source (JSON-ready through `to_dict`)."""

    phi_samples: int = 0
    phi_hits_by_kind: Counter = field(default_factory=Counter)
    phi_positions: list[str] = field(default_factory=list)
    contamination: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"phi": {"samples_with_phi": self.phi_samples, "hits_by_kind": dict(self.phi_hits_by_kind),
                        "example_positions": self.phi_positions},
                "contamination": self.contamination}


class Screen:
    """Applies the recipe's cleaning spec to one sample; the decontaminator is shared by every source."""

    def __init__(self, spec: CleanSpec, decontaminator: Optional[Decontaminator], seed: int):
        self.spec, self.decontaminator = spec, decontaminator
        self.phi = PhiScanner()
        near = spec.near_dedup
        self.near = NearDedup(near.threshold, near.num_perm, near.shingle_words, seed=seed)

    def apply_phi_policy(self, example: Example, report: ScreenReport) -> tuple[Example, Optional[str]]:
        """The PHI policy on one sample: (the example, masked under `mask`; "phi" under `drop`, else None)."""
        hits = self.phi.scan(sample_text(example))
        if not hits:
            return example, None
        report.phi_samples += 1
        report.phi_hits_by_kind.update(hit.kind for hit in hits)
        if len(report.phi_positions) < MAX_EXAMPLES:
            report.phi_positions.append(example.position)
        if self.spec.phi_policy == "drop":
            return example, "phi"
        if self.spec.phi_policy == "mask":
            return _map_contents(example, self.phi.mask), None
        return example, None

    def contamination(self, examples: list[Example], words: WordBatch, report: ScreenReport) -> list[Optional[str]]:
        """Per sample of a batch, "contaminated:<benchmark>" or None (one vectorized lookup for the batch);
        `words` holds the samples' texts (`sample_text`), normalized."""
        if self.decontaminator is None:
            return [None] * len(examples)
        reasons = []
        for example, hit in zip(examples, self.decontaminator.match_batch(words)):
            reasons.append(None if hit is None else f"contaminated:{hit.benchmark}")
            if hit is not None:
                entry = report.contamination.setdefault(hit.benchmark,
                                                        {"samples_removed": 0, "item_ids": [], "examples": []})
                entry["samples_removed"] += 1
                entry["item_ids"].append(hit.item_id)
                if len(entry["examples"]) < MAX_EXAMPLES:
                    entry["examples"].append({"position": example.position, "item_id": hit.item_id,
                                              "ngram": hit.ngram})
        return reasons

    def fingerprints(self, words: WordBatch) -> tuple[np.ndarray, np.ndarray]:
        """(16-byte exact keys, uint64 MinHash signatures) of the samples' normalized texts, for the dedup pass."""
        keys = np.array([ExactDedup.normalized_key(text) for text in words.normalized], dtype="S16")
        if not self.spec.near_dedup.enabled:
            return keys, np.zeros((len(words), self.spec.near_dedup.num_perm), dtype=np.uint64)
        return keys, self.near.batch_signatures(words)


def _map_contents(example: Example, fn) -> Example:
    def mapped(messages: Messages) -> Messages:
        return [{**m, "content": fn(m["content"])} if m["role"] != "system" else m for m in messages]
    if example.messages is not None:
        return replace(example, messages=mapped(example.messages))
    return replace(example, pair={side: mapped(messages) for side, messages in example.pair.items()})


def excerpt(text: str, max_chars: int = 300) -> str:
    return text if len(text) <= max_chars else text[:max_chars] + "..."
