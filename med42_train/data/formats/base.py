"""What every format adapter shares: the error it raises and the checked reading of text fields.

An adapter is a function `adapter(record: dict, **format_options) -> Messages | dict[str, Messages]`. It raises
`RecordError(reason, field, message)` for a record that does not fit its format: `reason` is a short stable key
the assembly counts records by (see REASONS), `field` the offending field. Every text it returns has CRLF and
lone CR normalized to LF, so no source leaks Windows line endings into the tokenized data.
"""

from __future__ import annotations

from typing import Any, Optional

Messages = list[dict[str, str]]

# Stable reason keys (the manifest counts dropped records by these; renaming one breaks comparisons across runs).
REASONS = {
    "malformed_json": "the line or file is not valid JSON",
    "undecodable_bytes": "the bytes are not valid UTF-8",
    "wrong_column_count": "a CSV row does not have the format's columns",
    "missing_field": "a required field is absent or null",
    "wrong_type": "a field has the wrong type (e.g. a number where text is expected)",
    "empty_field": "a required text field is empty or whitespace only",
    "empty_turn": "a conversation turn (assistant or user) is empty or whitespace only",
    "bad_roles": "roles do not alternate user/assistant after an optional system turn, ending with assistant",
    "answer_out_of_range": "the answer index or letter is not one of the options",
    "answer_mismatch": "the stated answer text differs from the option the answer index points to",
    "duplicate_id": "the record id was already seen in this source",
    "identical_pair": "chosen and rejected responses are the same text",
    "tied_scores": "chosen and rejected have equal scores: no preference to learn",
    "prompt_mismatch": "chosen and rejected do not share the same prompt",
    "image_required": "the question refers to an image the text does not carry",
    "excluded_by_filter": "the record is outside the subset the recipe selects (not an input error)",
}


class RecordError(ValueError):
    """A record that does not fit its declared format."""

    def __init__(self, reason: str, field: Optional[str], message: str):
        assert reason in REASONS, f"unknown reason key {reason!r}"  # internal invariant: keys are a closed set
        super().__init__(message)
        self.reason, self.field = reason, field


class RecordFiltered(RecordError):
    """A valid record the recipe's format options exclude: always dropped and counted, never a failure."""

    def __init__(self, field: str, message: str):
        super().__init__("excluded_by_filter", field, message)


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text(record: dict[str, Any], key: str, empty_reason: Optional[str] = "empty_field", where: str = "") -> str:
    """record[key] as text with LF newlines; `empty_reason=None` accepts an empty string."""
    label = f"{where}{key}"
    if record.get(key) is None:
        raise RecordError("missing_field", label, f"field '{label}' is missing")
    value = record[key]
    if not isinstance(value, str):
        raise RecordError("wrong_type", label, f"field '{label}' is {type(value).__name__}, not a string")
    if empty_reason and not value.strip():
        raise RecordError(empty_reason, label, f"field '{label}' is empty")
    return normalize_newlines(value)


def optional_text(record: dict[str, Any], key: str) -> str:
    """record[key] stripped, or '' when absent/null (optional fields such as an explanation)."""
    if record.get(key) is None:
        return ""
    return text(record, key, empty_reason=None).strip()


def items(record: dict[str, Any], key: str, kind: type, min_len: int = 1) -> Any:
    """A list or dict field checked for type and minimum length."""
    value = record.get(key)
    if value is None:
        raise RecordError("missing_field", key, f"field '{key}' is missing")
    if not isinstance(value, kind):
        raise RecordError("wrong_type", key, f"field '{key}' is {type(value).__name__}, not a {kind.__name__}")
    if len(value) < min_len:
        raise RecordError("empty_field", key, f"field '{key}' has {len(value)} entries, needs at least {min_len}")
    return value


def turn(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def checked_dialogue(messages: Messages, where: str = "messages", last_role: str = "assistant") -> Messages:
    """Alternating user/assistant after an optional system turn, ending with `last_role`, no empty turn.

    A preference prompt is checked with last_role="user" (the answers follow it).
    An empty system turn (SlimOrca has them) carries nothing and is dropped rather than rejected."""
    if messages and messages[0]["role"] == "system" and not messages[0]["content"].strip():
        messages = messages[1:]
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    expected = ["user", "assistant"] * (len(body) // 2 + 1)
    roles = [m["role"] for m in body]
    if not body or roles != expected[: len(body)] or roles[-1] != last_role:
        raise RecordError("bad_roles", where, f"field '{where}': turns must alternate user/assistant after an "
                                              f"optional system turn and end with {last_role}; got roles {roles}")
    for index, message in enumerate(messages):
        if not message["content"].strip() and message["role"] != "system":
            raise RecordError("empty_turn", f"{where}[{index}]",
                              f"field '{where}[{index}]' ({message['role']}) is empty or whitespace only")
    return messages
