"""Decontamination: find training texts that contain evaluation (benchmark) items, by word n-gram overlap.

How it matches (all on normalize.py's normalized words, so case, whitespace and punctuation never matter):
- An item is split into a question stem and its options: either given as parts (question, option, option, ...)
  or as one text whose trailing lines "A. ...", "B) ...", "(C) ..." are recognized as lettered options.
- A training text is contaminated by an item when it contains any `ngram_words`-gram (13 by default) of the
  item's stem, or of one of its options that is itself at least `ngram_words` words long. N-grams never span the
  stem/option boundary, so reordering, relettering or reformatting the options does not hide an item whose stem
  is long enough.
- A stem shorter than `ngram_words` words matches on its whole normalized text; when the item has options, all of
  them must also appear (as whole words, in any order) in the training text, because a short stem alone
  ("Which of the following is true?") is common in clean text. An item without options shorter than
  `ngram_words` matches on its whole normalized text alone.
- Lookups are vectorized: 64-bit n-gram hashes (normalize.ngram_hashes) of the training text against sorted
  numpy arrays of the benchmark hashes, so no n-gram string is built unless it matched.

Does not: catch paraphrases, translations, or texts that changed a word in every n-gram window; tell a true
leak from a shared quotation of 13+ words (a benchmark item quoting a guideline sentence makes clean texts that
quote it "contaminated" too; the report's examples show the matched n-gram so this can be judged). A 64-bit hash
collision could produce a false match with probability about (indexed n-grams) / 2**64 per n-gram looked up.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import regex

from med42_train.data.clean.normalize import extend_ngram_hashes, ngram_hashes, normalize_text, word_hashes

ItemText = Union[str, Sequence[str]]
# A line that is a lettered option: "A. text", "B) text", "(C) text", "D: text".
_OPTION_LINE = regex.compile(r"^\s*\(?([A-Za-z])[.):]\s*\)?\s+(\S.*)$")


@dataclass(frozen=True)
class Contamination:
    benchmark: str
    item_id: str
    ngram: str  # the normalized words that matched (the whole stem for a short item)


@dataclass(frozen=True)
class _Item:
    benchmark: str
    item_id: str
    options: tuple[str, ...]  # normalized; all must be present for a short-stem match


@dataclass
class _Stats:
    items_indexed: int = 0
    items_unindexable: int = 0  # nothing left after normalization
    samples_removed: int = 0
    matched_item_ids: set[str] = field(default_factory=set)
    examples: list[dict[str, str]] = field(default_factory=list)


def split_item(text: ItemText) -> tuple[str, list[str]]:
    """(stem, options) of a benchmark item given as parts or as one text ending in lettered option lines."""
    if not isinstance(text, str):
        parts = list(text)
        return (parts[0] if parts else ""), parts[1:]
    lines = text.splitlines()
    first = _first_option_line(lines)
    if first is None:
        return text, []
    return "\n".join(lines[:first]), [_OPTION_LINE.match(line).group(2) for line in lines[first:]
                                      if _OPTION_LINE.match(line)]


def _first_option_line(lines: list[str]) -> Optional[int]:
    """Index of the line opening a run of >= 2 option lines lettered A, B, C... in order, else None."""
    for start, line in enumerate(lines):
        match = _OPTION_LINE.match(line)
        if not match or match.group(1).upper() != "A":
            continue
        letters = [m.group(1).upper() for m in map(_OPTION_LINE.match, lines[start:]) if m]
        if len(letters) >= 2 and letters[1] == "B":
            return start
    return None


class Decontaminator:
    """Index benchmark items with `add_benchmark`, then `find` in each training text; `report` sums it up."""

    def __init__(self, ngram_words: int = 13, max_examples: int = 5):
        if ngram_words < 1:
            raise ValueError(f"decontamination ngram_words must be >= 1, got {ngram_words}")
        self.ngram_words, self.max_examples = ngram_words, max_examples
        self._items: list[_Item] = []
        self._stats: dict[str, _Stats] = {}
        self._ngram_item: dict[int, int] = {}  # n-gram hash -> first item holding it
        self._short_items: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))  # len->hash->items
        self._frozen: Optional[tuple[np.ndarray, np.ndarray]] = None
        self._frozen_short: dict[int, np.ndarray] = {}

    # ---- indexing ----
    def add_benchmark(self, name: str, items: Iterable[tuple[str, ItemText]]) -> None:
        """Index (item_id, item text or (question, *options)) pairs under benchmark `name`."""
        stats = self._stats.setdefault(name, _Stats())
        for position, pair in enumerate(items):
            item_id, text = _checked_item(name, position, pair)
            stem, options = split_item(text)
            if self._index_item(_Item(name, item_id, tuple(filter(None, map(normalize_text, options)))), stem,
                                options):
                stats.items_indexed += 1
            else:
                stats.items_unindexable += 1
        self._frozen = None

    def _index_item(self, item: _Item, stem: str, options: list[str]) -> bool:
        index = len(self._items)
        stem_hashes = word_hashes(normalize_text(stem))
        long_parts = [word_hashes(normalize_text(option)) for option in options]
        long_parts = [hashes for hashes in long_parts if len(hashes) >= self.ngram_words]
        if 0 < len(stem_hashes) < self.ngram_words:
            self._short_items[len(stem_hashes)][int(ngram_hashes(stem_hashes, len(stem_hashes))[0])].append(index)
        elif len(stem_hashes):
            long_parts.append(stem_hashes)
        if not long_parts and not len(stem_hashes):
            return False
        for hashes in long_parts:
            for gram in ngram_hashes(hashes, self.ngram_words).tolist():
                self._ngram_item.setdefault(gram, index)
        self._items.append(item)
        return True

    def _freeze(self) -> None:
        """Sorted numpy arrays for vectorized lookups, rebuilt after each add_benchmark."""
        keys = np.fromiter(self._ngram_item.keys(), dtype=np.uint64, count=len(self._ngram_item))
        values = np.fromiter(self._ngram_item.values(), dtype=np.int64, count=len(self._ngram_item))
        order = np.argsort(keys)
        self._frozen = (keys[order], values[order])
        self._frozen_short = {length: np.sort(np.fromiter(table.keys(), dtype=np.uint64, count=len(table)))
                              for length, table in self._short_items.items()}

    # ---- matching ----
    def find(self, text: str) -> Optional[Contamination]:
        """The first benchmark item `text` contains, or None; a hit counts as one removed training sample."""
        hit = self.match(text)
        if hit is not None:
            self._record(hit)
        return hit

    def match(self, text: str) -> Optional[Contamination]:
        """Like `find` without counting it in the report."""
        if self._frozen is None:
            self._freeze()
        normalized = normalize_text(text)
        hashes = word_hashes(normalized)
        grams, short_hits = hashes, []
        for length in range(1, min(self.ngram_words, len(hashes)) + 1):
            if length > 1:
                grams = extend_ngram_hashes(grams, hashes, length)
            if length in self._frozen_short:
                found = np.flatnonzero(_member(grams, self._frozen_short[length]))
                short_hits += [(length, int(start), int(grams[start])) for start in found]
        keys, items = self._frozen
        if len(hashes) >= self.ngram_words and len(keys):
            positions = np.searchsorted(keys, grams).clip(max=len(keys) - 1)
            found = np.flatnonzero(keys[positions] == grams)
            if len(found):
                return self._contamination(int(items[positions[found[0]]]), normalized, int(found[0]),
                                           self.ngram_words)
        return self._short_match(short_hits, normalized)

    def _short_match(self, short_hits: list[tuple[int, int, int]], normalized: str) -> Optional[Contamination]:
        """First short-stem hit whose item's options all appear in the text (as whole normalized words)."""
        padded = f" {normalized} "
        for length, start, key in short_hits:
            for index in self._short_items[length].get(key, ()):
                if all(f" {option} " in padded for option in self._items[index].options):
                    return self._contamination(index, normalized, start, length)
        return None

    def _contamination(self, index: int, normalized: str, start: int, length: int) -> Contamination:
        item = self._items[index]
        return Contamination(item.benchmark, item.item_id, " ".join(normalized.split(" ")[start:start + length]))

    # ---- reporting ----
    def _record(self, hit: Contamination) -> None:
        stats = self._stats[hit.benchmark]
        stats.samples_removed += 1
        stats.matched_item_ids.add(hit.item_id)
        if len(stats.examples) < self.max_examples:
            stats.examples.append({"item_id": hit.item_id, "ngram": hit.ngram})

    def report(self) -> dict[str, dict]:
        """Per benchmark: items indexed/unindexable/matched, training samples removed, a few examples."""
        return {name: {"items_indexed": s.items_indexed, "items_unindexable": s.items_unindexable,
                       "items_matched": len(s.matched_item_ids), "samples_removed": s.samples_removed,
                       "examples": list(s.examples)}
                for name, s in self._stats.items()}


def _member(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Boolean mask of `values` present in the sorted (non-empty) array `sorted_keys`."""
    positions = np.searchsorted(sorted_keys, values).clip(max=len(sorted_keys) - 1)
    return sorted_keys[positions] == values


def _checked_item(benchmark: str, position: int, pair) -> tuple[str, ItemText]:
    try:
        item_id, text = pair
    except (TypeError, ValueError):
        raise ValueError(f"benchmark {benchmark!r} item #{position}: expected an (item_id, text) pair, got "
                         f"{type(pair).__name__}; pass items as (id, question text) or (id, (question, *options))"
                         ) from None
    if not isinstance(text, str) and not (isinstance(text, Sequence) and all(isinstance(p, str) for p in text)):
        raise ValueError(f"benchmark {benchmark!r} item {item_id!r}: text must be a string or a sequence of strings "
                         f"(question, *options), got {type(text).__name__}")
    return str(item_id), text
