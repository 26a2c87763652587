"""Tokenization with the chat template: input_ids plus the mask of supervised (assistant) tokens."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from med42_train.data.formats import Messages


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
        # The Llama 3 template renders the prompt identically alone and before a reply; anything else would
        # train on a context the model never sees at inference.
        assert full[: len(prompt_ids)] == prompt_ids, "prompt tokens are not a prefix of prompt+completion"
        output[f"{side}_ids"] = full[len(prompt_ids):]
    return output


def _ids(tokenizer: PreTrainedTokenizerBase, messages: Messages, add_generation_prompt: bool = False) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
    )
    return list(encoded["input_ids"])
