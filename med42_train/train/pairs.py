"""The preference pairs of one DPO iteration, checked before any model loads.

Each pair is the data stage's token ids: `prompt_ids` (chat-formatted, ending in the assistant header) and the two
responses `chosen_ids` / `rejected_ids` (each the assistant content plus `<|eot_id|>`). Vectorised over Arrow
columns, so a 60k-pair iteration is checked in seconds without materialising Python lists.

- A systematic formatting fault refuses the stage (a template that adds a second BOS affects every pair).
- A pair that cannot be trained on is dropped with a reason, counted in the manifest: an empty response, a
  response that does not end on `<|eot_id|>`, a response holding a turn header (chosen and rejected do not share
  the prompt: the split between prompt and answer went wrong upstream), identical responses (no preference), or a
  prompt that alone fills `data.preference_max_length`.
- Truncation (TRL keeps the start of prompt + response up to max_length) is measured: pairs and tokens cut. Above
  `dpo.max_truncated_fraction` of the pairs, the stage refuses, naming the fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from med42_train.config import ConfigError
from med42_train.models.chat import EOT

BOS = "<|begin_of_text|>"
HEADER_START = "<|start_header_id|>"


@dataclass
class PairColumns:
    """One token-id column as numpy: flat values, per-row lengths, and the row of every value."""

    values: np.ndarray
    lengths: np.ndarray
    parents: np.ndarray

    @classmethod
    def of(cls, column: pa.ChunkedArray) -> "PairColumns":
        array = column.combine_chunks()
        return cls(values=pc.list_flatten(array).to_numpy(zero_copy_only=False),
                   lengths=pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64),
                   parents=pc.list_parent_indices(array).to_numpy(zero_copy_only=False))

    def count_per_row(self, token_id: int) -> np.ndarray:
        return np.bincount(self.parents[self.values == token_id], minlength=len(self.lengths))

    def first_token(self) -> np.ndarray:
        return self._token_at(np.cumsum(self.lengths) - self.lengths)

    def last_token(self) -> np.ndarray:
        return self._token_at(np.cumsum(self.lengths) - 1)

    def _token_at(self, flat_positions: np.ndarray) -> np.ndarray:
        """The value at one flat position per row; -1 for an empty row."""
        tokens = np.full(len(self.lengths), -1, dtype=np.int64)
        nonempty = self.lengths > 0
        tokens[nonempty] = self.values[flat_positions[nonempty]]
        return tokens


@dataclass
class PairReport:
    """What the check found, for the manifest."""

    num_pairs: int
    num_kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    num_truncated_pairs: int = 0
    num_truncated_tokens: int = 0
    max_length: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"num_pairs": self.num_pairs, "num_kept": self.num_kept, "dropped": self.dropped,
                "num_truncated_pairs": self.num_truncated_pairs, "num_truncated_tokens": self.num_truncated_tokens,
                "truncated_fraction": self.num_truncated_pairs / max(self.num_pairs, 1),
                "max_length": self.max_length}


def check_pairs(table: pa.Table, token_ids: dict[str, int], max_length: int,
                max_truncated_fraction: float, where: str) -> tuple[np.ndarray, PairReport]:
    """(indices of the trainable rows of `table`, report); raises ConfigError on a systematic fault."""
    prompt, chosen, rejected = (PairColumns.of(table[name]) for name in ("prompt_ids", "chosen_ids", "rejected_ids"))
    _refuse_bos_faults(prompt, chosen, rejected, token_ids[BOS], where)
    reasons = _drop_reasons(prompt, chosen, rejected, token_ids, max_length)
    keep = np.ones(len(prompt.lengths), dtype=bool)
    dropped = {}
    for reason, mask in reasons.items():
        newly = mask & keep
        if newly.any():
            dropped[reason] = int(newly.sum())
        keep &= ~mask
    report = PairReport(num_pairs=len(keep), num_kept=int(keep.sum()), dropped=dropped, max_length=max_length)
    _measure_truncation(report, prompt, chosen, rejected, keep, max_length)
    if report.num_kept == 0:
        raise ConfigError(f"{where}: none of the {report.num_pairs} pairs can be trained on (dropped: {dropped}); "
                          f"fix the preference sources of this iteration in the recipe and re-run `med42 data`")
    fraction = report.num_truncated_pairs / report.num_pairs
    if fraction > max_truncated_fraction:
        raise ConfigError(
            f"{where}: {report.num_truncated_pairs} of {report.num_pairs} pairs ({fraction:.1%}) exceed "
            f"data.preference_max_length={max_length} and would lose {report.num_truncated_tokens} tokens, over "
            f"dpo.max_truncated_fraction={max_truncated_fraction}: raise data.preference_max_length (and re-run "
            f"`med42 data`), or accept the cut with a higher dpo.max_truncated_fraction")
    return np.flatnonzero(keep), report


def _refuse_bos_faults(prompt: PairColumns, chosen: PairColumns, rejected: PairColumns, bos_id: int,
                       where: str) -> None:
    bos_in_prompt = prompt.count_per_row(bos_id)
    faulty = (bos_in_prompt != 1) | (prompt.first_token() != bos_id) | (chosen.count_per_row(bos_id) > 0) | (
        rejected.count_per_row(bos_id) > 0)
    if faulty.any():
        row = int(np.flatnonzero(faulty)[0])
        raise ConfigError(
            f"{where}: {int(faulty.sum())} pairs do not have exactly one {BOS} at the start of the prompt (first: "
            f"row {row}, {int(bos_in_prompt[row])} in its prompt): the chat template or the tokenizer adds a BOS "
            f"of its own; fix the template (models/chat.py) or the tokenizer's add_bos_token and re-run `med42 data`")


def _drop_reasons(prompt: PairColumns, chosen: PairColumns, rejected: PairColumns, token_ids: dict[str, int],
                  max_length: int) -> dict[str, np.ndarray]:
    eot, header = token_ids[EOT], token_ids[HEADER_START]
    return {
        "empty_response": (chosen.lengths <= 1) | (rejected.lengths <= 1),  # nothing but the <|eot_id|>
        "response_not_ending_on_eot": (chosen.last_token() != eot) | (rejected.last_token() != eot),
        "response_holds_a_turn_header": (chosen.count_per_row(header) > 0) | (rejected.count_per_row(header) > 0),
        "identical_responses": _identical_rows(chosen, rejected),
        "prompt_fills_max_length": prompt.lengths >= max_length,
    }


def _identical_rows(chosen: PairColumns, rejected: PairColumns) -> np.ndarray:
    """Rows whose two responses are the same ids: equal lengths and no differing value."""
    same_length = chosen.lengths == rejected.lengths
    # Rows of equal length line up value for value once both flat arrays keep only those rows.
    chosen_values = chosen.values[same_length[chosen.parents]]
    rejected_values = rejected.values[same_length[rejected.parents]]
    rows = chosen.parents[same_length[chosen.parents]]
    differing = np.zeros(len(same_length), dtype=bool)
    differing[rows[chosen_values != rejected_values]] = True
    return same_length & ~differing


def _measure_truncation(report: PairReport, prompt: PairColumns, chosen: PairColumns, rejected: PairColumns,
                        keep: np.ndarray, max_length: int) -> None:
    chosen_cut = np.maximum(prompt.lengths + chosen.lengths - max_length, 0)
    rejected_cut = np.maximum(prompt.lengths + rejected.lengths - max_length, 0)
    truncated = keep & ((chosen_cut > 0) | (rejected_cut > 0))
    report.num_truncated_pairs = int(truncated.sum())
    report.num_truncated_tokens = int((chosen_cut + rejected_cut)[truncated].sum())


def pairs_fingerprint(dataset_sha256: str, iteration: int, kept_rows: np.ndarray) -> str:
    """Identity of the pairs an iteration trains on: the data stage's dataset hash, the iteration, the kept rows."""
    digest = hashlib.sha256(f"{dataset_sha256}:{iteration}:".encode())
    digest.update(np.asarray(kept_rows, dtype=np.int64).tobytes())
    return digest.hexdigest()
