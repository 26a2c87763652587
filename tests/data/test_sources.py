"""Reading sources with the bad-input policy: every bad-input case is caught, named, and counted or raised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from med42_train.data.recipe import HubLocation, Source
from med42_train.data.sources import Example, Rejected, SourceError, count_records, iter_examples

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MEDQA = {"question": "Which drug first for chest pain?", "answer": "Aspirin",
         "options": {"A": "Aspirin", "B": "Warfarin", "C": "Insulin", "D": "Heparin"}, "answer_idx": "A"}
ALPACA = {"instruction": "Answer this question truthfully", "input": "What is BMI?", "output": "A ratio."}


def _jsonl(path: Path, lines: list) -> Path:
    """Lines given as dicts or lists are JSON-encoded; bytes and str are written as they are."""
    with open(path, "wb") as handle:
        for line in lines:
            if isinstance(line, (dict, list)):
                line = json.dumps(line)
            handle.write((line if isinstance(line, bytes) else line.encode()) + b"\n")
    return path


def _source(path: Path, fmt: str, on_error: str = "skip", kind: str = "sft", **kwargs) -> Source:
    return Source(name="src", kind=kind, format=fmt, path=path, on_error=on_error, **kwargs)


def _rejected(source: Source) -> list[Rejected]:
    return [item for item in iter_examples(source) if isinstance(item, Rejected)]


BAD_RECORDS = [  # (format, bad line, reason, field)
    ("medqa", "{not json", "malformed_json", None),
    ("medqa", b'{"question": "caf\xff", "options": {}}', "undecodable_bytes", None),
    ("medqa", {k: v for k, v in MEDQA.items() if k != "question"}, "missing_field", "question"),
    ("medqa", {**MEDQA, "options": ["Aspirin", "Warfarin"]}, "wrong_type", "options"),
    ("medqa", {**MEDQA, "question": 42}, "wrong_type", "question"),
    ("medqa", [MEDQA], "wrong_type", None),
    ("medqa", {**MEDQA, "answer_idx": "E"}, "answer_out_of_range", "answer_idx"),
    ("medmcqa", {"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 4},
     "answer_out_of_range", "cop"),
    ("alpaca", {**ALPACA, "output": " \n\t "}, "empty_turn", "output"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "   "}]},
     "empty_turn", "conversations[1]"),
    ("messages", {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "hi"}]},
     "bad_roles", "messages"),
]


@pytest.mark.parametrize("fmt, bad, reason, field", BAD_RECORDS)
def test_each_bad_record_is_skipped_with_its_reason_and_field(tmp_path, fmt, bad, reason, field):
    good = MEDQA if fmt == "medqa" else ALPACA if fmt == "alpaca" else None
    lines = ([good] if good else []) + [bad] + ([good] if good else [])
    items = list(iter_examples(_source(_jsonl(tmp_path / "x.jsonl", lines), fmt)))
    rejected = [item for item in items if isinstance(item, Rejected)]
    assert len(items) == len(lines)  # read == kept + rejected
    assert [(r.reason, r.field) for r in rejected] == [(reason, field)]
    assert rejected[0].position == f"{tmp_path / 'x.jsonl'}:{2 if good else 1}"
    assert rejected[0].raw  # the rejects file gets the record as read


@pytest.mark.parametrize("fmt, bad, reason, field", BAD_RECORDS)
def test_each_bad_record_fails_naming_file_line_field_and_reason(tmp_path, fmt, bad, reason, field):
    path = _jsonl(tmp_path / "x.jsonl", [bad])
    with pytest.raises(SourceError) as err:
        list(iter_examples(_source(path, fmt, on_error="fail")))
    message = str(err.value)
    assert f"{path}:1" in message and reason in message and "on_error: skip" in message
    assert (f"field '{field}'" if field else "the record") in message


def test_duplicate_ids_in_json_lines_are_caught_by_id_field(tmp_path):
    path = _jsonl(tmp_path / "x.jsonl", [{**ALPACA, "id": "a"}, {**ALPACA, "id": "b"}, {**ALPACA, "id": "a"},
                                         ALPACA])
    items = list(iter_examples(_source(path, "alpaca", id_field="id")))
    assert [type(i).__name__ for i in items] == ["Example", "Example", "Rejected", "Rejected"]
    assert [(r.reason, r.record_id) for r in items[2:]] == [("duplicate_id", "a"), ("missing_field", None)]
    with pytest.raises(SourceError, match=r"x.jsonl:3 \(record id a\): field 'id': duplicate_id"):
        list(iter_examples(_source(path, "alpaca", on_error="fail", id_field="id")))


def test_duplicate_keys_of_a_pubmedqa_dict_are_not_silently_overwritten(tmp_path):
    record = {"QUESTION": "Does it work?", "CONTEXTS": ["We tested it."], "LABELS": ["METHODS"],
              "final_decision": "yes", "LONG_ANSWER": "It works."}
    body = ", ".join(f'"{key}": {json.dumps(record)}' for key in ("111", "222", "111"))
    path = tmp_path / "ori_pqal.json"
    path.write_text("{" + body + "}")
    source = _source(path, "pubmedqa")
    items = list(iter_examples(source))
    assert [(type(i).__name__, i.record_id) for i in items] == [("Example", "111"), ("Example", "222"),
                                                               ("Rejected", "111")]
    assert items[2].reason == "duplicate_id" and count_records(source) == 3


def test_undecodable_bytes_inside_a_json_array_reject_only_that_record(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b'[{"instruction": "q", "output": "ok"}, {"instruction": "q", "output": "bad \xff\xfe"},'
                     b' {"instruction": "q", "output": "ok"}]')
    items = list(iter_examples(_source(path, "alpaca")))
    assert [getattr(i, "reason", "ok") for i in items] == ["ok", "undecodable_bytes", "ok"]
    assert items[1].position == f"{path}#1" and "\ufffd" in items[1].raw


def test_a_malformed_json_array_cannot_be_read_at_all(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('[{"instruction": "q", "output": "a"},\n {"instruction": "q" "output": "b"}]')
    with pytest.raises(SourceError, match=r"x.json:2: malformed JSON"):
        list(iter_examples(_source(path, "alpaca")))  # even under skip: no record of a broken document is trusted


def test_json_lines_are_streamed_record_by_record(tmp_path):
    """Records before a fatal line come out before the failure: the file is not parsed as a whole first."""
    path = _jsonl(tmp_path / "x.jsonl", [ALPACA, ALPACA, "{broken"])
    stream = iter_examples(_source(path, "alpaca", on_error="fail"))
    assert isinstance(next(stream), Example) and isinstance(next(stream), Example)
    with pytest.raises(SourceError):
        next(stream)


def test_csv_rows_keep_quoted_commas_and_newlines_and_bad_rows_are_caught(tmp_path):
    path = tmp_path / "mmlu.csv"
    path.write_bytes(b'"Which, of these?\nPick one",a,"b, c",d,e,B\n'
                     b'Too few,a,b,C\n'
                     b'Bad bytes \xff,a,b,c,d,A\n'
                     b'Out of range,a,b,c,d,F\n')
    source = _source(path, "mmlu_csv")
    items = list(iter_examples(source))
    assert count_records(source) == 4 and len(items) == 4
    assert items[0].messages[0]["content"] == "Which, of these?\nPick one\n\nA. a\nB. b, c\nC. d\nD. e"
    assert items[0].messages[1]["content"] == "The answer is B. b, c"
    assert [i.reason for i in items[1:]] == ["wrong_column_count", "undecodable_bytes", "answer_out_of_range"]
    assert items[1].position == f"{path}:3"  # the first row spans two lines


def test_count_records_counts_records_not_lines(tmp_path):
    jsonl = _jsonl(tmp_path / "x.jsonl", [ALPACA, "", "   ", ALPACA, "{broken"])
    array = tmp_path / "x.json"
    array.write_text(json.dumps([ALPACA] * 7, indent=2))
    assert count_records(_source(jsonl, "alpaca")) == 3  # blank lines are not records; a broken one is
    assert count_records(_source(array, "alpaca")) == 7


def test_filtered_records_are_dropped_and_counted_even_under_fail(tmp_path):
    rows = [{"question": "q", "subject": subject, "choices": ["a", "b", "c", "d"], "answer": 1}
            for subject in ("anatomy", "virology", "anatomy")]
    source = _source(_jsonl(tmp_path / "x.jsonl", rows), "mmlu_hub", on_error="fail",
                     format_options={"subjects": ["anatomy"]})
    items = list(iter_examples(source))
    assert [getattr(i, "reason", "kept") for i in items] == ["kept", "excluded_by_filter", "kept"]


def test_preference_sources_yield_pairs(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "a\r\nb", "rejected": "c"}])
    (example,) = iter_examples(_source(path, "preference_flat", kind="preference"))
    assert example.messages is None and example.pair["chosen"] == [{"role": "assistant", "content": "a\nb"}]


def test_a_missing_file_without_hub_names_the_fix(tmp_path):
    with pytest.raises(SourceError, match="does not exist and no hub location"):
        list(iter_examples(_source(tmp_path / "absent.jsonl", "alpaca")))


def test_a_hub_source_offline_fails_saying_how_to_pre_download(tmp_path):
    """Real datasets.load_dataset in offline mode (what a machine without network sees, without the retries)."""
    target = tmp_path / "medmcqa_train.jsonl"
    code = (f"from pathlib import Path\nfrom med42_train.data.recipe import HubLocation, Source\n"
            f"from med42_train.data.sources import iter_examples\n"
            f"s = Source(name='medmcqa', kind='sft', format='medmcqa', path=Path({str(target)!r}), "
            f"hub=HubLocation('openlifescienceai/medmcqa', 'train'))\nnext(iter_examples(s))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()
    message = "\n".join(last_line[-3:])
    assert "SourceError" in message and "pre-download" in message
    assert f"load_dataset('openlifescienceai/medmcqa', None, split='train').to_json('{target}')" in message


def test_hub_rows_use_the_hub_format_when_it_differs(tmp_path, monkeypatch):
    """A benchmark kept locally as MMLU CSV but read from cais/mmlu rows must use the mmlu_hub adapter."""
    import datasets

    rows = [{"question": "q?", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 2}]
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: iter(rows))
    source = Source(name="mmlu", kind="sft", format="mmlu_csv", path=tmp_path / "absent.csv",
                    hub=HubLocation("cais/mmlu", "test", "anatomy", "mmlu_hub"))
    (example,) = iter_examples(source)
    assert example.position == "hub:cais/mmlu/test#0"
    assert example.messages[1]["content"] == "The answer is C. c"


# ---- a UTF-8 byte-order mark opening a file is encoding, not content ----

BOM = b"\xef\xbb\xbf"
PUBMEDQA = {"QUESTION": "Is aspirin useful?", "CONTEXTS": ["It is."], "LABELS": ["RESULTS"],
            "final_decision": "yes", "LONG_ANSWER": "Yes."}
BOM_LAYOUTS = {  # format: (file name, bytes without the BOM, records in it)
    "medqa": ("medqa.jsonl", (json.dumps(MEDQA) + "\n" + json.dumps(MEDQA) + "\n").encode(), 2),
    "alpaca": ("alpaca.json", json.dumps([ALPACA, ALPACA, ALPACA]).encode(), 3),
    "pubmedqa": ("pubmedqa.json", json.dumps({"1": PUBMEDQA, "2": PUBMEDQA}).encode(), 2),
    "mmlu_csv": ("mmlu.csv", b'"Which, of these?",a,b,c,d,A\r\nSecond?,a,b,c,d,B\r\n', 2),
}


@pytest.mark.parametrize("fmt", sorted(BOM_LAYOUTS))
@pytest.mark.parametrize("on_error", ["skip", "fail"])
def test_a_leading_bom_loses_no_record_in_any_layout(tmp_path, fmt, on_error):
    name, content, num_records = BOM_LAYOUTS[fmt]
    (tmp_path / "plain").mkdir(), (tmp_path / "marked").mkdir()
    plain, marked = tmp_path / "plain" / name, tmp_path / "marked" / name
    plain.write_bytes(content)
    marked.write_bytes(BOM + content)
    items = list(iter_examples(_source(marked, fmt, on_error=on_error)))
    expected = list(iter_examples(_source(plain, fmt, on_error=on_error)))
    assert all(isinstance(item, Example) for item in items) and len(items) == num_records
    assert [item.messages for item in items] == [item.messages for item in expected]
    # Positions (line numbers, array indices, keys) are those of the file as written.
    assert [item.position.replace("/marked/", "/plain/") for item in items] == [item.position for item in expected]
    assert count_records(_source(marked, fmt)) == num_records


def test_a_bom_inside_a_json_lines_file_is_still_bad_input(tmp_path):
    path = _jsonl(tmp_path / "medqa.jsonl", [BOM + json.dumps(MEDQA).encode(), BOM + json.dumps(MEDQA).encode()])
    items = list(iter_examples(_source(path, "medqa")))
    assert isinstance(items[0], Example) and items[0].position.endswith(":1")
    assert isinstance(items[1], Rejected) and items[1].reason == "malformed_json" and items[1].position.endswith(":2")


def test_a_bom_alone_on_the_first_line_is_a_blank_line(tmp_path):
    path = _jsonl(tmp_path / "medqa.jsonl", [BOM, json.dumps(MEDQA)])
    items = list(iter_examples(_source(path, "medqa", on_error="fail")))
    assert len(items) == 1 and items[0].position.endswith(":2") and count_records(_source(path, "medqa")) == 1
