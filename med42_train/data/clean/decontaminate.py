"""Decontamination: find training texts that contain evaluation (benchmark) items, by word n-gram overlap.

How it matches (all on normalize.py's normalized words, so case, whitespace and punctuation never matter):
- An item is split into a question stem and its options: either given as parts (question, option, option, ...)
  or as one text whose trailing lines "A. ...", "B) ...", "(C) ..." are recognized as lettered options.
- A training text is contaminated by an item when it contains any `ngram_words`-gram (13 by default) of the
  item's stem, or of one of its options that is itself at least `ngram_words` words long. N-grams never span the
  stem/option boundary, so reordering, relettering or reformatting the options does not hide an item whose stem
  is long enough. N-grams shared by `common_ngram_items` (3) or more distinct items are boilerplate ("which of
  the following is the most appropriate next step in management") and are not evidence.
- A stem shorter than `ngram_words` words matches on its whole normalized text; when the item has options, all of
  them must also appear (in any order, spaces ignored) in the training text, because a short stem alone
  ("Which of the following is true?") is common in clean text. An item without options shorter than
  `ngram_words` matches on its whole normalized text alone.
- Lookups are vectorized: 64-bit n-gram hashes (normalize.ngram_hashes) of the training text against sorted
  numpy arrays of the benchmark hashes, so no n-gram string is built unless it matched.
- When an item is identical (same normalized stem and options) to one indexed earlier, e.g. the same MMLU question
  in two subjects, hits name the first one and the report counts the sample for both benchmarks.

Use: `find`/`find_many` return the hits and count them in `report()`; `match`/`match_many` only return them.
Batch with `*_many`: per call there are ~30 numpy operations whatever the text length, so on short chat samples
`match_many` runs ~3.5x faster than `match` per text (benchmarks/bench_clean.py: ~1.4M vs ~0.4M words per CPU
second on wikidoc/ChatDoctor against MedQA + PubMedQA + MMLU medical).

Does not: catch paraphrases, translations, or texts that changed a word in every n-gram window; tell a true
leak from a shared quotation of 13+ words (a benchmark item quoting a guideline sentence makes clean texts that
quote it "contaminated" too; the report's examples show the matched n-gram so this can be judged). A 64-bit hash
collision could produce a false match with probability about (indexed n-grams) / 2**64 per n-gram looked up.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import regex

from med42_train.data.clean.normalize import WordBatch, extend_ngram_hashes, ngram_hashes, normalize_text, word_hashes

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
    return "\n".join(lines[:first]).rstrip(), [_OPTION_LINE.match(line).group(2) for line in lines[first:]
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
    """Index benchmark items with `add_benchmark`, then `find_many`/`find` in training texts; `report` sums it up."""

    def __init__(self, ngram_words: int = 13, common_ngram_items: int = 3, max_examples: int = 5):
        if ngram_words < 1 or common_ngram_items < 2:
            raise ValueError(f"decontamination needs ngram_words >= 1 and common_ngram_items >= 2, got "
                             f"{ngram_words} and {common_ngram_items}")
        self.ngram_words, self.common_ngram_items, self.max_examples = ngram_words, common_ngram_items, max_examples
        self._items: list[_Item] = []
        self._aliases: dict[int, list[int]] = defaultdict(list)  # first item -> later items with the same text
        self._first_of_text: dict[tuple[str, ...], int] = {}
        self._index_of: dict[tuple[str, str], int] = {}  # (benchmark, item id) -> first item with that id
        self._stats: dict[str, _Stats] = {}
        self._gram_chunks: list[np.ndarray] = []  # unique n-gram hashes of each distinct item ...
        self._owner_chunks: list[np.ndarray] = []  # ... and that item's index, repeated
        self._short_items: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))  # len->hash->items
        self._ngram_table = self._short_table = None  # lookup tables, rebuilt by _freeze after add_benchmark
        self.num_common_ngrams = 0

    # ---- indexing ----
    def add_benchmark(self, name: str, items: Iterable[tuple[str, ItemText]]) -> None:
        """Index (item_id, item text or (question, *options)) pairs under benchmark `name`."""
        stats = self._stats.setdefault(name, _Stats())
        for position, pair in enumerate(items):
            item_id, text = _checked_item(name, position, pair)
            stem, options = split_item(text)
            normalized_options = tuple(filter(None, map(normalize_text, options)))
            indexed = self._index_item(_Item(name, item_id, normalized_options), normalize_text(stem))
            stats.items_indexed += indexed
            stats.items_unindexable += not indexed
        self._ngram_table = None

    def _index_item(self, item: _Item, stem: str) -> bool:
        """Add one item's stem and long options; an item identical to an earlier one becomes its alias."""
        if not stem and not item.options:
            return False
        index, text_key = len(self._items), (stem, *sorted(item.options))
        self._items.append(item)
        self._index_of.setdefault((item.benchmark, item.item_id), index)
        if text_key in self._first_of_text:
            self._aliases[self._first_of_text[text_key]].append(index)
            return True
        self._first_of_text[text_key] = index
        stem_hashes = word_hashes(stem)
        parts = [word_hashes(option) for option in item.options]
        parts = [hashes for hashes in parts + [stem_hashes] if len(hashes) >= self.ngram_words]
        if 0 < len(stem_hashes) < self.ngram_words:
            self._short_items[len(stem_hashes)][int(ngram_hashes(stem_hashes, len(stem_hashes))[0])].append(index)
        if parts:
            grams = np.unique(np.concatenate([ngram_hashes(hashes, self.ngram_words) for hashes in parts]))
            self._gram_chunks.append(grams)
            self._owner_chunks.append(np.full(len(grams), index, dtype=np.int64))
        return bool(parts) or bool(len(stem_hashes))

    def _freeze(self) -> None:
        """Lookup tables: item n-grams (n-grams held by >= common_ngram_items distinct items are boilerplate and
        dropped) and short stems, kept apart so the small short-stem table stays in the CPU cache."""
        grams, owners = _concat(self._gram_chunks, np.uint64), _concat(self._owner_chunks, np.int64)
        order = np.lexsort((owners, grams))  # by n-gram, then by item: the first item indexed comes first
        grams, owners = grams[order], owners[order]
        starts = np.flatnonzero(np.r_[True, grams[1:] != grams[:-1]]) if len(grams) else np.zeros(0, np.int64)
        num_items = np.diff(np.r_[starts, len(grams)])
        keep = starts[num_items < self.common_ngram_items]
        self.num_common_ngrams = int(np.sum(num_items >= self.common_ngram_items))
        self._ngram_table = _KeyTable(grams[keep], owners[keep])
        short = np.array([key for table in self._short_items.values() for key in table], dtype=np.uint64)
        self._short_table = _KeyTable(short, np.full(len(short), -1, dtype=np.int64))

    # ---- matching ----
    def find(self, text: str) -> Optional[Contamination]:
        """The benchmark item `text` contains, or None; a hit counts as one removed training sample."""
        return self.find_many([text])[0]

    def find_many(self, texts: Sequence[str]) -> list[Optional[Contamination]]:
        """`find` for a batch: one vectorized pass over all their words (much faster than `find` per text)."""
        hits = self.match_many(texts)
        for hit in hits:
            if hit is not None:
                self._record(hit)
        return hits

    def match(self, text: str) -> Optional[Contamination]:
        """Like `find` without counting it in the report (for callers that keep their own counts)."""
        return self.match_many([text])[0]

    def match_many(self, texts: Sequence[str]) -> list[Optional[Contamination]]:
        """Like `find_many` without counting anything in the report."""
        return self.match_batch(WordBatch.from_texts(texts))

    def match_batch(self, batch: WordBatch) -> list[Optional[Contamination]]:
        """`match_many` on the texts of an already normalized and word-hashed batch."""
        if self._ngram_table is None:
            self._freeze()
        long_hits, short_hits = self._lookup(batch)
        results: list[Optional[Contamination]] = [None] * len(batch)
        for text_index, positions in long_hits.items():
            owners = positions[:, 1]
            # The item most n-grams point to: a planted item shares one boilerplate n-gram with others at most.
            values, counts = np.unique(owners, return_counts=True)
            best = values[np.argmax(counts)]
            start = int(positions[np.flatnonzero(owners == best)[0], 0])
            results[text_index] = self._contamination(int(best), batch, start, self.ngram_words)
        for text_index, (length, start, key) in short_hits:
            if results[text_index] is None:
                results[text_index] = self._short_match(batch, text_index, length, start, key)
        return results

    def _lookup(self, batch: WordBatch) -> tuple[dict[int, np.ndarray], list[tuple[int, tuple[int, int, int]]]]:
        """Hits of the batch's n-grams: long ones as {text: [[word start, owner item], ...]}, short stems as a list
        of (text, (length, word start, stem hash))."""
        queries = list(self._query_grams(batch.hashes))
        long_hits: dict[int, list[tuple[int, int]]] = defaultdict(list)
        if queries and queries[-1][0] == self.ngram_words:
            grams = queries.pop()[1]
            for start, row in zip(*self._ngram_table.lookup(grams)):
                if batch.within_one_text(start, self.ngram_words):
                    long_hits[int(batch.text_of_word[start])].append((start, int(self._ngram_table.owners[row])))
        short_hits = []
        if queries:
            values = np.concatenate([grams for _, grams in queries])
            offsets = np.cumsum([0] + [len(grams) for _, grams in queries])
            for flat, _ in zip(*self._short_table.lookup(values)):
                query = int(np.searchsorted(offsets, flat, side="right")) - 1
                length, start = queries[query][0], flat - int(offsets[query])
                if batch.within_one_text(start, length):
                    short_hits.append((int(batch.text_of_word[start]), (length, start, int(values[flat]))))
        return {text: np.array(hits) for text, hits in long_hits.items()}, short_hits

    def _query_grams(self, hashes: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(length, hashes of every window of that many words) for each short-stem length and for ngram_words."""
        grams = hashes
        for length in range(1, self.ngram_words + 1):
            if length > 1:
                grams = extend_ngram_hashes(grams, hashes, length)
            if not len(grams):
                return
            if length == self.ngram_words or length in self._short_items:
                yield length, grams

    def _short_match(self, batch: WordBatch, text_index: int, length: int, start: int, key: int
                     ) -> Optional[Contamination]:
        """A short-stem hit counts when the item's options all appear in the text; spaces are ignored in this check
        because a changed punctuation mark inside an option ("46,XX" -> "46 XX") splits its words."""
        unspaced = batch.normalized[text_index].replace(" ", "")
        for index in self._short_items[length].get(key, ()):
            if all(option.replace(" ", "") in unspaced for option in self._items[index].options):
                return self._contamination(index, batch, start, length)
        return None

    def _contamination(self, index: int, batch: WordBatch, start: int, length: int) -> Contamination:
        item = self._items[index]
        return Contamination(item.benchmark, item.item_id, batch.words(start, length))

    # ---- reporting ----
    def _record(self, hit: Contamination) -> None:
        """Count a removed sample for the matched item and for identical items in other benchmarks."""
        index = self._index_of[(hit.benchmark, hit.item_id)]
        same_items = [self._items[i] for i in [index, *self._aliases.get(index, ())]]
        for name in dict.fromkeys(item.benchmark for item in same_items):
            stats = self._stats[name]
            stats.samples_removed += 1
            own_ids = [item.item_id for item in same_items if item.benchmark == name]
            stats.matched_item_ids.update(own_ids)
            if len(stats.examples) < self.max_examples:
                stats.examples.append({"item_id": own_ids[0], "ngram": hit.ngram})

    def report(self) -> dict[str, dict]:
        """Per benchmark: items indexed/unindexable/matched, training samples removed, a few examples."""
        return {name: {"items_indexed": s.items_indexed, "items_unindexable": s.items_unindexable,
                       "items_matched": len(s.matched_item_ids), "samples_removed": s.samples_removed,
                       "examples": list(s.examples)}
                for name, s in self._stats.items()}


class _KeyTable:
    """Sorted uint64 keys with an owner each, and a bitmap filter (one byte per slot, >= 16 slots per key) that
    rules out most absent values with one vectorized gather before the binary search."""

    def __init__(self, keys: np.ndarray, owners: np.ndarray):
        order = np.argsort(keys, kind="stable")
        self.keys, self.owners = keys[order], owners[order]
        self._slot_mask = np.uint64((1 << max(10, min(30, (16 * max(len(keys), 1)).bit_length()))) - 1)
        self._bitmap = np.zeros(int(self._slot_mask) + 1, dtype=bool)
        self._bitmap[(self.keys & self._slot_mask).astype(np.int64)] = True

    def lookup(self, values: np.ndarray) -> tuple[list[int], list[int]]:
        """(positions in `values`, rows in the table) of the values present in the table."""
        if not len(self.keys):
            return [], []
        candidates = np.flatnonzero(self._bitmap[(values & self._slot_mask).astype(np.int64)])
        rows = np.minimum(np.searchsorted(self.keys, values[candidates]), len(self.keys) - 1)
        found = self.keys[rows] == values[candidates]
        return candidates[found].tolist(), rows[found].tolist()


def _concat(chunks: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)


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
