"""Preference layouts -> {"prompt": messages ending with a user turn, "chosen": [assistant], "rejected": [assistant]}.

Ties: UltraFeedback binarized keeps pairs whose chosen and rejected scores are equal (about 11% of the flat sample
in realdata). Such a pair carries no preference, and DPO would still push the model towards one side of it, so
ties are rejected (reason tied_scores) unless format_options.allow_ties is true. Pairs without scores are kept.
"""

from __future__ import annotations

import re
from typing import Any

from med42_train.data.formats.base import (Messages, RecordError, checked_dialogue, items, text, turn)
from med42_train.data.formats.chat import message_list, sharegpt_turns

HH_TURN = re.compile(r"\n\n(Human|Assistant):")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def make_pair(prompt: Messages, chosen: str, rejected: str, prompt_field: str = "prompt") -> dict[str, Messages]:
    checked_dialogue(prompt, prompt_field, last_role="user")
    for side, answer in (("chosen", chosen), ("rejected", rejected)):
        if not answer.strip():
            raise RecordError("empty_turn", side, f"field '{side}': the answer is empty or whitespace only")
    if chosen.strip() == rejected.strip():
        raise RecordError("identical_pair", "rejected", "fields 'chosen' and 'rejected' are identical")
    return {"prompt": prompt, "chosen": [turn("assistant", chosen)], "rejected": [turn("assistant", rejected)]}


def _check_tie(score_chosen: Any, score_rejected: Any, allow_ties: bool) -> None:
    if allow_ties or score_chosen is None or score_rejected is None:
        return
    if score_chosen == score_rejected:
        raise RecordError("tied_scores", "score_rejected",
                          f"score_chosen == score_rejected == {score_chosen}: the pair has no preference "
                          f"(set format_options.allow_ties=true to keep ties)")


def preference_flat(record: dict[str, Any], allow_ties: bool = False) -> dict[str, Messages]:
    """UltraFeedback binarized, flattened: prompt, chosen, rejected as strings; optional metadata.score_*."""
    scores = record.get("metadata") if isinstance(record.get("metadata"), dict) else record
    _check_tie(scores.get("score_chosen"), scores.get("score_rejected"), allow_ties)
    prompt = [turn("user", text(record, "prompt", empty_reason="empty_turn"))]
    return make_pair(prompt, text(record, "chosen", None), text(record, "rejected", None))


def _split_conversation(chosen: Messages, rejected: Messages) -> tuple[Messages, str, str]:
    """Shared prompt and the two final assistant answers of two full conversations."""
    for side, messages in (("chosen", chosen), ("rejected", rejected)):
        if not messages or messages[-1]["role"] != "assistant":
            raise RecordError("bad_roles", side, f"field '{side}' does not end with an assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise RecordError("prompt_mismatch", "rejected",
                          "fields 'chosen' and 'rejected' differ before their final assistant turn")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def hh_turns(transcript: str, field: str) -> Messages:
    """'\\n\\nHuman: ...\\n\\nAssistant: ...' as messages."""
    parts = HH_TURN.split(transcript)
    if parts[0].strip() or len(parts) < 3:
        raise RecordError("bad_roles", field, f"field '{field}' does not start with '\\n\\nHuman:'")
    return [turn(HH_ROLES[role], content.strip()) for role, content in zip(parts[1::2], parts[2::2])]


def hh_rlhf(record: dict[str, Any]) -> dict[str, Messages]:
    """Anthropic HH-RLHF: chosen/rejected full transcripts; the prompt is their shared multi-turn prefix."""
    chosen = hh_turns(text(record, "chosen"), "chosen")
    rejected = hh_turns(text(record, "rejected"), "rejected")
    prompt, chosen_answer, rejected_answer = _split_conversation(chosen, rejected)
    return make_pair(prompt, chosen_answer, rejected_answer)


def ultrafeedback_hub(record: dict[str, Any], allow_ties: bool = False) -> dict[str, Messages]:
    """UltraFeedback binarized / Snorkel-DPO hub layout: prompt, prompt_id, chosen and rejected as full message
    lists (prompt turns + answer), score_chosen, score_rejected."""
    _check_tie(record.get("score_chosen"), record.get("score_rejected"), allow_ties)
    chosen = message_list(items(record, "chosen", list, min_len=2), "chosen")
    rejected = message_list(items(record, "rejected", list, min_len=2), "rejected")
    prompt, chosen_answer, rejected_answer = _split_conversation(chosen, rejected)
    return make_pair(prompt, chosen_answer, rejected_answer)


def _sharegpt_answer(record: dict[str, Any], side: str) -> str:
    answer = items(record, side, dict)
    if answer.get("from") not in ("gpt", "assistant"):
        raise RecordError("bad_roles", f"{side}.from", f"field '{side}.from'={answer.get('from')!r} is not gpt")
    return text(answer, "value", empty_reason="empty_turn", where=f"{side}.")


def sharegpt_preference(record: dict[str, Any]) -> dict[str, Messages]:
    """LLaMA-Factory: conversations [{from, value}] (the prompt), chosen {from, value}, rejected {from, value}."""
    prompt = sharegpt_turns(items(record, "conversations", list), "conversations")
    return make_pair(prompt, _sharegpt_answer(record, "chosen"), _sharegpt_answer(record, "rejected"),
                     prompt_field="conversations")


