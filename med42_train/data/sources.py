"""Reading a recipe source record by record, with its bad-input policy.

`iter_examples(source)` yields, in file order, an `Example` for every record its format adapter converts and, for
every record it cannot use, either a `Rejected` (source.on_error == 'skip') or a raised `SourceError`
(on_error == 'fail') naming the file, line or record id, the field and the reason. So for every source:
records read == examples + rejected.

Layouts: JSON lines (streamed line by line; the default for any file whose first character is '{'), a JSON array
(parsed whole: the upstream array files are small; convert a huge one to JSON lines), a JSON object mapping
id -> record for the formats in DICT_FORMATS (PubMedQA), headerless CSV for the formats in CSV_COLUMNS (MMLU),
and a hub dataset read with `datasets.load_dataset(..., streaming=True)` when the local path is absent.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from med42_train.data.formats import (CSV_COLUMNS, DICT_FORMATS, PREFERENCE_FORMATS, SFT_FORMATS, Messages,
                                     RecordError, RecordFiltered)
from med42_train.data.recipe import Source

RAW_MAX_CHARS = 4000  # a rejected record's raw text is cut to this, so a rejects file stays readable and bounded
SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes under errors='surrogateescape', or lone surrogates
# A JSON escape that decodes to a surrogate ("\udc80"): usually half of a valid pair (an escaped emoji), so it only
# triggers the per-record check, which looks for lone ones.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass(frozen=True, slots=True)
class Example:
    """A converted record: `messages` for an SFT source, `pair` ({prompt, chosen, rejected} -> messages) for a
    preference source; the other one is None."""

    source: str
    position: str  # 'path:line' (JSON lines, CSV), 'path#index' (array), 'path#key' (dict), 'hub:id/split#index'
    record_id: Optional[str]
    messages: Optional[Messages] = None
    pair: Optional[dict[str, Messages]] = None


@dataclass(frozen=True, slots=True)
class Rejected:
    source: str
    position: str
    record_id: Optional[str]
    reason: str  # a stable key of formats.REASONS
    field: Optional[str]
    raw: str  # the record as read (cut to RAW_MAX_CHARS), for the rejects file


class SourceError(ValueError):
    """A bad record in a source whose policy is on_error: fail, or a source that cannot be read at all."""


@dataclass(slots=True)  # not frozen: frozen dataclasses cost a setattr call per field on every record
class _Raw:
    """One record as read, before conversion: a parsed value, or the reason it could not be parsed."""

    position: str
    key: Optional[str]  # the record's key in a top-level dict
    value: Any = None
    text: str = ""
    reason: Optional[str] = None
    message: str = ""
    may_hold_surrogates: bool = True  # False when the reader already knows the text is clean (the common case)


def iter_examples(source: Source) -> Iterator[Union[Example, Rejected]]:
    """Every record of the source, converted or rejected, in order (see the module docstring)."""
    adapter = _adapter(source)
    seen_ids: set[str] = set()
    for raw in _read(source):
        record_id = raw.key
        try:
            if raw.reason:
                raise RecordError(raw.reason, None, raw.message)
            record = _checked_record(raw.value, raw.may_hold_surrogates)
            record_id = _record_id(source, record, raw.key)
            _check_new_id(record_id, seen_ids, source.id_field)
            converted = adapter(record, **source.format_options)
        except RecordError as err:
            if source.on_error == "fail" and not isinstance(err, RecordFiltered):
                raise SourceError(_describe(source, raw.position, record_id, err)) from None
            yield Rejected(source.name, raw.position, record_id, err.reason, err.field, _raw_text(raw))
            continue
        if source.kind == "sft":
            yield Example(source.name, raw.position, record_id, messages=converted)
        else:
            yield Example(source.name, raw.position, record_id, pair=converted)


def count_records(source: Source) -> int:
    """Records available (non-blank lines, array or dict entries, CSV rows, hub split size), without converting."""
    local = _local_path(source)
    if local is None:
        return _hub_num_rows(source)
    layout = _layout(local, source.format)
    if layout == "jsonl":
        with open(local, "rb") as handle:
            return sum(1 for number, line in enumerate(handle, start=1) if _without_bom(line, number).strip())
    if layout == "csv":
        return sum(1 for _ in _read_csv(local, source))
    records, _ = _load_whole(local, layout)
    return len(getattr(records, "pairs", None) or records)


def _adapter(source: Source):
    """The adapter for what will be read: the hub rows' own format when reading from the hub."""
    from_hub = _local_path(source) is None
    fmt = source.hub.format if from_hub and source.hub.format else source.format
    return (SFT_FORMATS if source.kind == "sft" else PREFERENCE_FORMATS)[fmt]


def _checked_record(value: Any, may_hold_surrogates: bool) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecordError("wrong_type", None, f"the record is a {type(value).__name__}, not a JSON object")
    if may_hold_surrogates and _has_surrogates(value):
        raise RecordError("undecodable_bytes", None, "the record holds bytes that are not valid UTF-8")
    return value


def _has_surrogates(value: Any) -> bool:
    """Whether any string in the record holds a lone surrogate (valid pairs were joined by the JSON decoder)."""
    if isinstance(value, str):
        return SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(v) for v in value)
    return False


def _record_id(source: Source, record: dict, key: Optional[str]) -> Optional[str]:
    """The value of source.id_field, else the record's key in a top-level dict, else None."""
    if not source.id_field:
        return key
    if record.get(source.id_field) is None:
        raise RecordError("missing_field", source.id_field, f"id field '{source.id_field}' is missing")
    return str(record[source.id_field])


def _check_new_id(record_id: Optional[str], seen_ids: set[str], id_field: Optional[str]) -> None:
    if record_id is None:
        return
    if record_id in seen_ids:
        raise RecordError("duplicate_id", id_field, f"record id {record_id!r} was already seen")
    seen_ids.add(record_id)


def _describe(source: Source, position: str, record_id: Optional[str], err: RecordError) -> str:
    where = position + (f" (record id {record_id})" if record_id is not None else "")
    field = f"field '{err.field}'" if err.field else "the record"
    return (f"source '{source.name}' ({source.format}): {where}: {field}: {err.reason}: {err}. Fix: correct or "
            f"remove the record, or set on_error: skip on source '{source.name}' to drop and count bad records.")


def _raw_text(raw: _Raw) -> str:
    text = raw.text or json.dumps(raw.value, ensure_ascii=False, default=str)
    return SURROGATE.sub("\ufffd", text)[:RAW_MAX_CHARS]


# ---- locating and reading --------------------------------------------------------------------------------------


def _local_path(source: Source) -> Optional[Path]:
    if source.path is not None and source.path.is_file():
        return source.path
    if source.hub is None:
        raise SourceError(f"source '{source.name}': file {source.path} does not exist and no hub location is set. "
                          f"Fix: put the file there, correct 'path', or add `hub: {{id: ..., split: ...}}`.")
    return None


def _layout(path: Path, fmt: str) -> str:
    if fmt in CSV_COLUMNS:
        return "csv"
    if fmt in DICT_FORMATS:
        return "dict"
    if path.suffix in (".jsonl", ".ndjson"):  # a JSON-lines file may well start with a (broken) array line
        return "jsonl"
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")  # a UTF-8 BOM and blank lines may precede
    return "array" if head.startswith(b"[") else "jsonl"


def _read(source: Source) -> Iterator[_Raw]:
    local = _local_path(source)
    if local is None:
        yield from _read_hub(source)
        return
    layout = _layout(local, source.format)
    if layout == "jsonl":
        yield from _read_jsonl(local)
    elif layout == "csv":
        yield from _read_csv(local, source)
    else:
        yield from _read_whole(local, layout)


UTF8_BOM = b"\xef\xbb\xbf"


def _without_bom(line: bytes, line_number: int) -> bytes:
    """A UTF-8 byte-order mark opening the file (Windows editors, spreadsheet exports) is encoding, not content;
    one anywhere else is left in place, so that line is still bad input."""
    return line.removeprefix(UTF8_BOM) if line_number == 1 else line


def _read_jsonl(path: Path) -> Iterator[_Raw]:
    with open(path, "rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = _without_bom(line, line_number)
            if not line.strip():
                continue
            position = f"{path}:{line_number}"
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as err:
                yield _Raw(position, None, text=line.decode("utf-8", "replace"), reason="undecodable_bytes",
                           message=f"byte {err.start} of the line is not valid UTF-8")
                continue
            try:
                yield _Raw(position, None, value=json.loads(text), text=text.rstrip("\r\n"),
                           may_hold_surrogates=SURROGATE_ESCAPE.search(text) is not None)
            except json.JSONDecodeError as err:
                yield _Raw(position, None, text=text, reason="malformed_json",
                           message=f"malformed JSON at column {err.colno}: {err.msg}")


def _read_csv(path: Path, source: Source) -> Iterator[_Raw]:
    """Headerless CSV rows as {column: value}; quoted fields may hold commas and newlines."""
    columns = CSV_COLUMNS[source.format]
    # surrogateescape keeps undecodable bytes as markers, so one bad row is rejected, not the whole file;
    # utf-8-sig drops a byte-order mark at the start of the file only.
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle)
        for row in reader:
            if not row:
                continue
            position = f"{path}:{reader.line_num}"
            if len(row) != len(columns):
                yield _Raw(position, None, text=",".join(row), reason="wrong_column_count",
                           message=f"{len(row)} columns, expected {len(columns)}: {', '.join(columns)}")
                continue
            text = ",".join(row)
            yield _Raw(position, None, value=dict(zip(columns, row)), text=text,
                       may_hold_surrogates=SURROGATE.search(text) is not None)


def _read_whole(path: Path, layout: str) -> Iterator[_Raw]:
    records, suspect = _load_whole(path, layout)
    if layout == "dict":
        # Every (key, record) pair as written, repeated keys included: the key is the record id, so a repeated
        # one reaches the duplicate_id check instead of being silently overwritten by the JSON parser.
        for key, value in getattr(records, "pairs", None) or records.items():
            yield _Raw(f"{path}#{key}", str(key), value=value, may_hold_surrogates=suspect)
    else:
        for index, value in enumerate(records):
            yield _Raw(f"{path}#{index}", None, value=value, may_hold_surrogates=suspect)


class _Object(dict):
    """A parsed JSON object that keeps its pairs when some key repeats (plain dicts keep only the last)."""

    pairs: Optional[list] = None


def _object_hook(pairs: list[tuple[str, Any]]) -> dict:
    mapping = _Object(pairs)
    if len(mapping) < len(pairs):
        mapping.pairs = pairs
    return mapping


def _load_whole(path: Path, layout: str) -> tuple[Any, bool]:
    """A whole JSON array or object (undecodable bytes kept as markers, rejected per record), and whether any
    record may hold such a marker."""
    text = _without_bom(path.read_bytes(), 1).decode("utf-8", errors="surrogateescape")
    suspect = SURROGATE.search(text) is not None or SURROGATE_ESCAPE.search(text) is not None
    try:
        records = json.loads(text, object_pairs_hook=_object_hook)
    except json.JSONDecodeError as err:
        raise SourceError(f"{path}:{err.lineno}: malformed JSON at column {err.colno} ({err.msg}); the whole file "
                          f"is one JSON document, so no record of it can be trusted. Fix the file.") from None
    expected = dict if layout == "dict" else list
    if not isinstance(records, expected):
        raise SourceError(f"{path}: top level is a {type(records).__name__}, expected a JSON "
                          f"{'object of id -> record' if layout == 'dict' else 'array'}")
    return records, suspect


# ---- the hub ----------------------------------------------------------------------------------------------------


def _read_hub(source: Source) -> Iterator[_Raw]:
    hub = source.hub
    try:
        from datasets import load_dataset

        rows = load_dataset(hub.id, hub.config, split=hub.split, streaming=True)
        for index, row in enumerate(rows):
            # Arrow strings are valid UTF-8 by construction: no surrogate check needed.
            yield _Raw(f"hub:{hub.id}/{hub.split}#{index}", None, value=row, may_hold_surrogates=False)
    except (OSError, ValueError, ConnectionError, ImportError) as err:  # datasets raises these when offline
        raise SourceError(_hub_help(source, err)) from None


def _hub_num_rows(source: Source) -> int:
    hub = source.hub
    try:
        from datasets import load_dataset_builder

        splits = load_dataset_builder(hub.id, hub.config).info.splits or {}
        return int(splits[hub.split].num_examples)
    except (OSError, ValueError, ConnectionError, KeyError, ImportError) as err:
        raise SourceError(_hub_help(source, err)) from None


def _hub_help(source: Source, err: Exception) -> str:
    hub = source.hub
    target = source.path or Path(f"{source.name}.jsonl")
    download = (f"python -c \"from datasets import load_dataset; load_dataset({hub.id!r}, {hub.config!r}, "
                f"split={hub.split!r}).to_json({str(target)!r})\"")
    same_layout = hub.format in (None, source.format)
    return (f"source '{source.name}': local file {source.path} is missing and hub dataset {hub.id} "
            f"(config {hub.config}, split {hub.split}) could not be read: {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}. Fix: on a machine with network access, pre-download "
            f"it with\n  {download}\nand copy it to {target}"
            + ("" if same_layout else f" (the hub rows have format '{hub.format}': set this source's format to "
                                      f"'{hub.format}' when its file holds them)") + ".")
