"""Format adapters: one function per upstream record layout, each returning chat messages.

SFT adapters return a list of {"role", "content"} messages; preference adapters return
{"prompt": messages, "chosen": messages, "rejected": messages}. A record that cannot be converted raises
`RecordError` naming the field, so the caller can report the file and line.
"""

from __future__ import annotations

from typing import Any, Callable

Messages = list[dict[str, str]]
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class RecordError(ValueError):
    """A record that does not fit its declared format."""


def _text(record: dict[str, Any], key: str, allow_empty: bool = False) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise RecordError(f"field '{key}' is missing or not a string")
    if not allow_empty and not value.strip():
        raise RecordError(f"field '{key}' is empty")
    return value


def alpaca(record: dict[str, Any]) -> Messages:
    """{instruction, input, output}: medAlpaca flashcards, wikidoc, ChatDoctor, MedQuAD..."""
    instruction = _text(record, "instruction", allow_empty=True).strip()
    extra = _text(record, "input", allow_empty=True).strip() if record.get("input") is not None else ""
    prompt = f"{instruction}\n\n{extra}".strip()
    if not prompt:
        raise RecordError("fields 'instruction' and 'input' are both empty")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": _text(record, "output")}]


def format_mcqa(question: str, options: dict[str, str]) -> str:
    lines = [question.strip(), ""] + [f"{letter}. {text.strip()}" for letter, text in options.items()]
    return "\n".join(lines)


def medqa(record: dict[str, Any]) -> Messages:
    """MedQA (jind11) jsonl: question, options {A..}, answer_idx; the answer states letter and text."""
    options = record.get("options")
    if not isinstance(options, dict) or len(options) < 2:
        raise RecordError("field 'options' is missing or has fewer than two options")
    letter = _text(record, "answer_idx").strip()
    if letter not in options:
        raise RecordError(f"field 'answer_idx'={letter!r} is not one of the options {sorted(options)}")
    prompt = format_mcqa(_text(record, "question"), options)
    answer = f"The answer is {letter}. {options[letter].strip()}"
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def sharegpt(record: dict[str, Any]) -> Messages:
    """ShareGPT: conversations [{from: system|human|gpt, value}]."""
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise RecordError("field 'conversations' is missing or empty")
    messages = []
    for index, turn in enumerate(turns):
        role = SHAREGPT_ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
        if role is None:
            raise RecordError(f"conversations[{index}].from is not one of {sorted(SHAREGPT_ROLES)}")
        messages.append({"role": role, "content": _text(turn, "value")})
    return _checked_dialogue(messages)


def messages_format(record: dict[str, Any]) -> Messages:
    """OpenAI / UltraChat: messages [{role, content}]."""
    turns = record.get("messages")
    if not isinstance(turns, list) or not turns:
        raise RecordError("field 'messages' is missing or empty")
    return _checked_dialogue([{"role": t.get("role"), "content": _text(t, "content")} for t in turns])


def _checked_dialogue(messages: Messages) -> Messages:
    body = messages[1:] if messages[0]["role"] == "system" else messages
    expected = ["user", "assistant"] * (len(body) // 2 + 1)
    if not body or [m["role"] for m in body] != expected[: len(body)] or body[-1]["role"] != "assistant":
        raise RecordError("turns must alternate user/assistant after an optional system turn and end with assistant")
    return messages


def preference_flat(record: dict[str, Any]) -> dict[str, Messages]:
    """UltraFeedback binarized, flattened: prompt, chosen, rejected as strings."""
    chosen, rejected = _text(record, "chosen"), _text(record, "rejected")
    if chosen.strip() == rejected.strip():
        raise RecordError("fields 'chosen' and 'rejected' are identical")
    return {
        "prompt": [{"role": "user", "content": _text(record, "prompt")}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


SFT_FORMATS: dict[str, Callable[[dict[str, Any]], Messages]] = {
    "alpaca": alpaca,
    "medqa": medqa,
    "sharegpt": sharegpt,
    "messages": messages_format,
}
PREFERENCE_FORMATS: dict[str, Callable[[dict[str, Any]], dict[str, Messages]]] = {
    "preference_flat": preference_flat,
}
