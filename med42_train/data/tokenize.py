"""Tokenization with the chat template: input_ids plus the mask of supervised (assistant) tokens.

Two paths that give the same ids and masks:
- the template path (`tokenize_sft`, `tokenize_preference`): `apply_chat_template` one conversation at a time;
  ~47 us of jinja per sample plus Python per call, far too slow for ~1B tokens, kept as the reference.
- the fast path (`ChatEncoder`): renders the project's Llama 3 or 3.1 training format directly into strings with
  the character spans of the supervised parts (assistant content + <|eot_id|>), encodes whole batches with the Rust
  tokenizer, and marks every token that overlaps a span, exactly as transformers does from the {% generation %}
  tags. It is used only when the tokenizer carries one of the project's training templates exactly (anything else
  would be rendered differently); other tokenizers fall back to the template path with a warning.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from transformers import PreTrainedTokenizerBase

from med42_train.data.formats import Messages
from med42_train.models.chat import END_HEADER, EOT, START_HEADER, ChatFormat, format_of_template
from med42_train.runtime.log import get_logger

log = get_logger()
Span = tuple[int, int]  # [start, end) character offsets in the rendered text


# ---------------------------------------------------------------- template path (reference)

def tokenize_sft(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> tuple[list[int], list[int]]:
    """(input_ids, assistant_masks): the mask is 1 on assistant content and its <|eot_id|>, 0 elsewhere."""
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return list(encoded["input_ids"]), list(encoded["assistant_masks"])


def tokenize_preference(tokenizer: PreTrainedTokenizerBase, pair: dict[str, Messages]) -> dict[str, list[int]]:
    """prompt_ids (with the assistant header) and the chosen/rejected completions that follow it."""
    prompt_ids = _ids(tokenizer, pair["prompt"], add_generation_prompt=True)
    output = {"prompt_ids": prompt_ids}
    for side in ("chosen", "rejected"):
        full = _ids(tokenizer, pair["prompt"] + pair[side])
        output[f"{side}_ids"] = _completion(full, prompt_ids)
    return output


def _completion(full: Sequence[int], prompt_ids: Sequence[int]) -> list[int]:
    # The Llama 3 template renders the prompt identically alone and before a reply; anything else would
    # train on a context the model never sees at inference.
    assert list(full[: len(prompt_ids)]) == list(prompt_ids), "prompt tokens are not a prefix of prompt+completion"
    return list(full[len(prompt_ids):])


def _ids(tokenizer: PreTrainedTokenizerBase, messages: Messages, add_generation_prompt: bool = False) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(encoded["input_ids"])


# ---------------------------------------------------------------- rendering

def render_chat(messages: Messages, bos_token: str, chat_format: ChatFormat,
                add_generation_prompt: bool = False) -> tuple[str, list[Span]]:
    """The text `chat_format.template` renders, and the spans its {% generation %} tags enclose."""
    if chat_format.family == "llama3":
        return render_llama3(messages, bos_token, add_generation_prompt)
    # 3.1: the system block always comes first, with the date lines, holding the (trimmed) system prompt if any.
    has_system = bool(messages) and messages[0]["role"] == "system"
    system = messages[0]["content"].strip() if has_system else ""
    if any(m["role"] in ("tool", "ipython") or "tool_calls" in m for m in messages):
        raise ValueError("the training chat format renders no tool turns (Meta's 3.1 template would)")
    prefix = f"{bos_token}{START_HEADER}system{END_HEADER}\n\n{chat_format.system_preamble}{system}{EOT}"
    return render_llama3(messages[1:] if has_system else messages, prefix, add_generation_prompt)


def render_llama3(messages: Messages, bos_token: str, add_generation_prompt: bool = False) -> tuple[str, list[Span]]:
    """The text TRAINING_LLAMA3_TEMPLATE renders, and the spans its {% generation %} tags enclose (`bos_token` is
    whatever precedes the turns: 3.1 passes BOS and its system block)."""
    parts, spans, length = [bos_token], [], len(bos_token)
    for message in messages:
        header = f"{START_HEADER}{message['role']}{END_HEADER}\n\n"
        body = message["content"].strip() + EOT  # jinja's `trim` is str.strip()
        if message["role"] == "assistant":
            spans.append((length + len(header), length + len(header) + len(body)))
        parts += (header, body)
        length += len(header) + len(body)
    if add_generation_prompt:
        parts.append(f"{START_HEADER}assistant{END_HEADER}\n\n")
    return "".join(parts), spans


# ---------------------------------------------------------------- fast path

@dataclass
class TokenBatch:
    """Variable-length token rows stored flat: row i is values[offsets[i]:offsets[i + 1]] (Arrow's list layout)."""

    values: np.ndarray  # int32 token ids (or int8 mask bits)
    offsets: np.ndarray  # int64, len = num_rows + 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, index: int) -> np.ndarray:
        return self.values[self.offsets[index]: self.offsets[index + 1]]

    def row_sums(self) -> np.ndarray:
        """Per-row sum (e.g. supervised tokens per sample from a mask batch)."""
        cumulative = np.concatenate([[0], np.cumsum(self.values, dtype=np.int64)])
        return cumulative[self.offsets[1:]] - cumulative[self.offsets[:-1]]

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], dtype=np.int32) -> "TokenBatch":
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        values = np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype, count=int(offsets[-1]))
        return cls(values, offsets)


def training_format(tokenizer: PreTrainedTokenizerBase) -> ChatFormat | None:
    """The training format `tokenizer` renders exactly as render_chat does (so the fast path is exact), or None."""
    return format_of_template(tokenizer.chat_template) if getattr(tokenizer, "is_fast", False) else None


def has_training_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return training_format(tokenizer) is not None


class ChatEncoder:
    """Batched chat tokenization with assistant masks; identical to the template path (tests/data/test_tokenize)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer
        self.format = training_format(tokenizer)
        self.fast = self.format is not None
        if not self.fast:
            log.warning("tokenizer does not carry the project's training chat template: tokenizing one sample at "
                        "a time through apply_chat_template (slow but exact)")

    def encode_sft(self, conversations: Sequence[Messages]) -> tuple[TokenBatch, TokenBatch]:
        """(input_ids, assistant_masks) for a batch of conversations."""
        if not self.fast:
            rows = [tokenize_sft(self.tokenizer, messages) for messages in conversations]
            return (TokenBatch.from_lists([ids for ids, _ in rows]),
                    TokenBatch.from_lists([mask for _, mask in rows], dtype=np.int8))
        rendered = [self._render(messages) for messages in conversations]
        encodings = self._encode([text for text, _ in rendered])
        ids = TokenBatch.from_lists([encoding.ids for encoding in encodings])
        mask = np.zeros(len(ids.values), dtype=np.int8)
        for row, (encoding, (_, spans)) in enumerate(zip(encodings, rendered)):
            base = ids.offsets[row]
            for first, last in _span_tokens(encoding, spans):
                mask[base + first: base + last + 1] = 1
        return ids, TokenBatch(mask, ids.offsets.copy())

    def encode_preference(self, pairs: Sequence[dict[str, Messages]]) -> dict[str, TokenBatch]:
        """prompt_ids / chosen_ids / rejected_ids for a batch of preference pairs."""
        if not self.fast:
            rows = [tokenize_preference(self.tokenizer, pair) for pair in pairs]
            return {key: TokenBatch.from_lists([row[key] for row in rows]) for key in PREFERENCE_KEYS}
        texts = []
        for pair in pairs:
            prompt, _ = self._render(pair["prompt"], add_generation_prompt=True)
            texts += [prompt] + [self._render(pair["prompt"] + pair[side])[0] for side in ("chosen", "rejected")]
        ids = [encoding.ids for encoding in self._encode(texts)]
        prompts, chosen, rejected = ids[0::3], ids[1::3], ids[2::3]
        return {"prompt_ids": TokenBatch.from_lists(prompts),
                "chosen_ids": TokenBatch.from_lists([_completion(f, p) for f, p in zip(chosen, prompts)]),
                "rejected_ids": TokenBatch.from_lists([_completion(f, p) for f, p in zip(rejected, prompts)])}

    def encode_texts(self, texts: Sequence[str]) -> TokenBatch:
        """Bare batched encoding of already rendered texts (the benchmark's baseline)."""
        return TokenBatch.from_lists([encoding.ids for encoding in self._encode(texts)])

    def _render(self, messages: Messages, add_generation_prompt: bool = False) -> tuple[str, list[Span]]:
        return render_chat(messages, self.tokenizer.bos_token, self.format, add_generation_prompt)

    def _encode(self, texts: Sequence[str]):
        # The backend call skips the BatchEncoding wrapping; apply_chat_template also encodes without
        # adding special tokens (the rendered text carries BOS).
        return self.tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)


PREFERENCE_KEYS = ("prompt_ids", "chosen_ids", "rejected_ids")


def _span_tokens(encoding, spans: Sequence[Span]):
    """(first, last) token index of every token overlapping each span, as transformers computes the mask."""
    for start, end in spans:
        first, last = encoding.char_to_token(start), encoding.char_to_token(end - 1)
        # A character split over several byte-level tokens maps to one of them; the mask starts at the first.
        while first > 0 and encoding.token_to_chars(first - 1)[1] > start:
            first -= 1
        yield first, last
