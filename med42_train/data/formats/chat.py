"""Instruction and dialogue layouts: alpaca-style, ShareGPT, SlimOrca, OpenAI/UltraChat messages."""

from __future__ import annotations

from typing import Any, Optional

from med42_train.data.formats.base import (Messages, RecordError, checked_dialogue, items, optional_text, text,
                                           turn)

SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
MESSAGE_ROLES = {role: role for role in ("system", "user", "assistant")}


def alpaca(record: dict[str, Any], instruction_field: str = "instruction", input_field: Optional[str] = "input",
           output_field: str = "output") -> Messages:
    """{instruction, input, output}: medAlpaca flashcards, wikidoc, ChatDoctor, MedQuAD...

    The field names are options so that a source with the same shape under other names (MedQuAD's
    Question/Answer, NIv2's definition/inputs/targets) needs a recipe line, not code.
    """
    instruction = optional_text(record, instruction_field)
    extra = optional_text(record, input_field) if input_field else ""
    prompt = f"{instruction}\n\n{extra}".strip()
    if not prompt:
        raise RecordError("empty_turn", instruction_field,
                          f"fields '{instruction_field}' and '{input_field}' are both empty")
    return [turn("user", prompt), turn("assistant", text(record, output_field, empty_reason="empty_turn"))]


def sharegpt_turns(turns: list, where: str) -> Messages:
    """ShareGPT [{from, value}] turns as messages (roles checked, text normalized)."""
    return _turns(turns, where, "from", "value", SHAREGPT_ROLES)


def _turns(turns: list, where: str, role_field: str, text_field: str, roles: dict[str, str]) -> Messages:
    """Turns of any chat layout as messages: `roles` maps the layout's role names to ours."""
    messages = []
    for index, item in enumerate(turns):
        label = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise RecordError("wrong_type", label, f"field '{label}' is {type(item).__name__}, not an object")
        role = roles.get(item.get(role_field))
        if role is None:
            raise RecordError("bad_roles", f"{label}.{role_field}", f"field '{label}.{role_field}'="
                              f"{item.get(role_field)!r} is not one of {list(roles)}")
        messages.append(turn(role, text(item, text_field, empty_reason=None, where=f"{label}.")))
    return messages


def sharegpt(record: dict[str, Any]) -> Messages:
    """ShareGPT / FastChat: conversations [{from: system|human|gpt, value}]."""
    return checked_dialogue(sharegpt_turns(items(record, "conversations", list), "conversations"), "conversations")


def slimorca(record: dict[str, Any]) -> Messages:
    """SlimOrca: ShareGPT turns with a per-turn `weight` (null for system/human, 1 for gpt).

    A gpt turn with weight 0 would mean "do not train on this answer"; the upstream file has none, and a
    sample-level assistant mask cannot express it, so such a record is rejected rather than trained on.
    """
    turns = items(record, "conversations", list)
    for index, item in enumerate(turns):
        weight = item.get("weight") if isinstance(item, dict) else None
        if weight is not None and not isinstance(weight, (int, float)):
            raise RecordError("wrong_type", f"conversations[{index}].weight",
                              f"field 'conversations[{index}].weight' is {type(weight).__name__}, not a number")
        if item.get("from") == "gpt" and weight == 0:
            raise RecordError("wrong_type", f"conversations[{index}].weight",
                              f"field 'conversations[{index}].weight' is 0 on an answer: it must not be trained on")
    return sharegpt(record)


def messages_format(record: dict[str, Any]) -> Messages:
    """OpenAI / UltraChat: messages [{role, content}]."""
    return checked_dialogue(message_list(items(record, "messages", list), "messages"), "messages")


def message_list(turns: list, where: str) -> Messages:
    """[{role, content}] turns with known roles and text content."""
    return _turns(turns, where, "role", "content", MESSAGE_ROLES)
