"""Format adapters: upstream records -> chat messages, on hand-made records and on the real public files."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter

import pytest

from med42_train.data.formats import (RecordError, alpaca, headqa, medmcqa, medqa, mmlu_hub, mmlu_pro,
                                      preference_flat, pubhealth, pubmedqa_hub, sciq, sharegpt, slimorca,
                                      ultrafeedback_hub)
from med42_train.data.recipe import Source
from med42_train.data.sources import Rejected, count_records, iter_examples

MEDQA = {"question": "A 45-year-old man has crushing chest pain. Which drug first?",
         "answer": "Aspirin", "options": {"A": "Aspirin", "B": "Warfarin", "C": "Insulin", "D": "Heparin"},
         "meta_info": "step2&3", "answer_idx": "A"}
MEDMCQA = {"id": "e9ad821a", "question": "Which vitamin deficiency causes scurvy?", "opa": "Vitamin A",
           "opb": "Vitamin B12", "opc": "Vitamin C", "opd": "Vitamin D", "cop": 2, "choice_type": "single",
           "exp": "Vitamin C is needed for collagen synthesis.", "subject_name": "Biochemistry",
           "topic_name": "Vitamins"}
ANSWER = re.compile(r"The answer is ([A-Z])\. (.*?)(?:\n\nExplanation: (.*))?$", re.S)


def _answer(messages) -> tuple[str, str, str]:
    """(letter, option text, explanation) stated by an MCQA assistant turn; the option text is read back from
    the user turn's "X. ..." line, so the letter and the text must agree there too."""
    match = ANSWER.fullmatch(messages[-1]["content"])
    assert match, messages[-1]["content"]
    letter, stated, explanation = match.groups()
    option_line = next(line for line in messages[0]["content"].splitlines() if line.startswith(f"{letter}. "))
    assert option_line == f"{letter}. {stated}"
    return letter, stated, explanation or ""


# ---- hand-made records ----------------------------------------------------------------------------------------


def test_medqa_states_letter_and_answer_text():
    messages = medqa(MEDQA)
    assert messages[0]["content"].endswith("A. Aspirin\nB. Warfarin\nC. Insulin\nD. Heparin")
    assert messages[1] == {"role": "assistant", "content": "The answer is A. Aspirin"}


@pytest.mark.parametrize("broken, reason, field", [
    ({**MEDQA, "answer_idx": "E"}, "answer_out_of_range", "answer_idx"),
    ({**MEDQA, "options": {"A": "x"}}, "empty_field", "options"),
    ({k: v for k, v in MEDQA.items() if k != "question"}, "missing_field", "question"),
    ({**MEDQA, "answer": "Warfarin"}, "answer_mismatch", "answer"),
])
def test_medqa_rejects_broken_records_naming_the_field(broken, reason, field):
    with pytest.raises(RecordError, match=field) as err:
        medqa(broken)
    assert (err.value.reason, err.value.field) == (reason, field)


def test_medmcqa_reads_both_cop_bases_to_the_same_answer_with_explanation():
    zero_based = medmcqa(MEDMCQA)
    one_based = medmcqa({**MEDMCQA, "cop": 3}, cop_base=1)
    assert zero_based == one_based
    assert _answer(zero_based) == ("C", "Vitamin C", "Vitamin C is needed for collagen synthesis.")
    assert _answer(medmcqa({**MEDMCQA, "exp": None}))[2] == ""  # no explanation line when the source has none
    with pytest.raises(RecordError, match="cop_base") as err:
        medmcqa({**MEDMCQA, "cop": 0}, cop_base=1)  # a 0-based copy read as 1-based: caught, not shifted
    assert err.value.reason == "answer_out_of_range"


def test_headqa_maps_the_correct_aid_to_its_letter_and_rejects_image_questions():
    record = {"qid": 7, "qtext": "Which organ makes insulin?", "ra": 3, "image": "", "category": "medicine",
              "answers": [{"aid": 2, "atext": "Liver"}, {"aid": 1, "atext": "Kidney"}, {"aid": 4, "atext": "Lung"},
                          {"aid": 3, "atext": "Pancreas"}]}
    messages = headqa(record)
    assert messages[0]["content"].endswith("A. Kidney\nB. Liver\nC. Pancreas\nD. Lung")  # in aid order
    assert _answer(messages)[:2] == ("C", "Pancreas")
    for broken, reason in (({**record, "ra": 5}, "answer_out_of_range"), ({**record, "image": "img.png"},
                                                                          "image_required")):
        with pytest.raises(RecordError) as err:
            headqa(broken)
        assert err.value.reason == reason


def test_sciq_shuffles_options_per_record_deterministically():
    records = [{"question": f"What does organelle {i} do?", "correct_answer": f"right {i}", "support": "",
                "distractor1": f"wrong a{i}", "distractor2": f"wrong b{i}", "distractor3": f"wrong c{i}"}
               for i in range(40)]
    answers = [_answer(sciq(record)) for record in records]
    assert all(text == f"right {i}" for i, (_, text, _) in enumerate(answers))
    assert len({letter for letter, _, _ in answers}) == 4  # the correct answer is not always first
    assert [sciq(r) for r in records] == [sciq(dict(reversed(r.items()))) for r in records]  # stable per record
    with_support = sciq({**records[0], "support": "Mitochondria make ATP."})
    assert _answer(with_support)[2] == "Mitochondria make ATP."


def test_slimorca_drops_an_empty_system_turn_and_rejects_unweighted_answers():
    record = {"conversations": [{"from": "system", "value": "", "weight": None},
                                {"from": "human", "value": "Hi\r\nthere", "weight": 0.0},
                                {"from": "gpt", "value": "Hello", "weight": 1.0}]}
    assert slimorca(record) == [{"role": "user", "content": "Hi\nthere"}, {"role": "assistant", "content": "Hello"}]
    record["conversations"][2]["weight"] = 0
    with pytest.raises(RecordError, match=r"conversations\[2\].weight"):
        slimorca(record)


def test_alpaca_joins_instruction_and_input_maps_fields_and_rejects_empty_output():
    messages = alpaca({"instruction": "Answer this question truthfully", "input": "What is BMI?", "output": "A."})
    assert messages[0]["content"] == "Answer this question truthfully\n\nWhat is BMI?"
    medquad = alpaca({"Question": "What is asthma?", "Answer": "A disease.\r\n"}, instruction_field="Question",
                     input_field=None, output_field="Answer")
    assert medquad == [{"role": "user", "content": "What is asthma?"}, {"role": "assistant", "content": "A disease.\n"}]
    with pytest.raises(RecordError, match="output") as err:
        alpaca({"instruction": "q", "input": "", "output": "   "})
    assert err.value.reason == "empty_turn"


def test_sharegpt_maps_roles_and_requires_alternation():
    record = {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "h"},
                                {"from": "gpt", "value": "g"}]}
    assert [m["role"] for m in sharegpt(record)] == ["system", "user", "assistant"]
    with pytest.raises(RecordError, match="alternate"):
        sharegpt({"conversations": [{"from": "human", "value": "h"}, {"from": "human", "value": "h2"}]})


def test_mmlu_hub_and_mmlu_pro_use_their_0_based_answer_index():
    row = {"question": "Which bone?", "subject": "anatomy", "choices": ["Femur", "Tibia", "Ulna", "Radius"],
           "answer": 2}
    assert _answer(mmlu_hub(row))[:2] == ("C", "Ulna")
    pro = {"question": "Which?", "options": [f"opt {i}" for i in range(10)], "answer": "J", "answer_index": 9,
           "category": "health"}
    assert _answer(mmlu_pro(pro))[:2] == ("J", "opt 9")
    with pytest.raises(RecordError) as err:
        mmlu_hub({**row, "answer": 4})
    assert err.value.reason == "answer_out_of_range"


def test_pubmedqa_hub_layout_matches_the_original_layout():
    hub = {"pubid": 1, "question": "Does X help?", "final_decision": "maybe", "long_answer": "Unclear.",
           "context": {"contexts": ["We studied X.", "X helped some."], "labels": ["METHODS", "RESULTS"]}}
    messages = pubmedqa_hub(hub)
    assert messages[0]["content"] == ("Context:\nMETHODS: We studied X.\nRESULTS: X helped some.\n\n"
                                      "Question: Does X help?\n\nA. yes\nB. no\nC. maybe")
    assert messages[1]["content"] == "The answer is C. maybe\n\nExplanation: Unclear."


def test_pubhealth_states_the_verdict_and_rejects_unlabelled_claims():
    record = {"claim_id": "1", "claim": "Vitamin C cures colds.", "label": 0, "explanation": "Trials show no cure."}
    messages = pubhealth(record)
    assert "Claim: Vitamin C cures colds." in messages[0]["content"]
    assert _answer(messages) == ("A", "false", "Trials show no cure.")
    assert _answer(pubhealth({**record, "label": 3}))[:2] == ("D", "unproven")
    with pytest.raises(RecordError) as err:
        pubhealth({**record, "label": -1})
    assert err.value.reason == "answer_out_of_range"


def test_ultrafeedback_hub_splits_the_shared_prompt_and_rejects_ties():
    prompt = [{"role": "user", "content": "Name a vitamin."}]
    record = {"prompt": "Name a vitamin.", "prompt_id": "p1", "score_chosen": 9.0, "score_rejected": 4.0,
              "chosen": prompt + [{"role": "assistant", "content": "Vitamin C."}],
              "rejected": prompt + [{"role": "assistant", "content": "A rock."}]}
    assert ultrafeedback_hub(record) == {"prompt": prompt, "chosen": [{"role": "assistant", "content": "Vitamin C."}],
                                         "rejected": [{"role": "assistant", "content": "A rock."}]}
    tie = {**record, "score_rejected": 9.0}
    with pytest.raises(RecordError) as err:
        ultrafeedback_hub(tie)
    assert err.value.reason == "tied_scores"
    assert ultrafeedback_hub(tie, allow_ties=True)["chosen"][0]["content"] == "Vitamin C."
    other_prompt = {**record, "rejected": [{"role": "user", "content": "Other?"}, record["rejected"][1]]}
    with pytest.raises(RecordError) as err:
        ultrafeedback_hub(other_prompt)
    assert err.value.reason == "prompt_mismatch"


def test_preference_flat_rejects_identical_answers():
    assert preference_flat({"prompt": "p", "chosen": "a", "rejected": "b"})["chosen"][0]["role"] == "assistant"
    with pytest.raises(RecordError, match="identical"):
        preference_flat({"prompt": "p", "chosen": "a", "rejected": "a "})


# ---- the real upstream files (../shared/realdata) ----------------------------------------------------------------


def _read(realdata, filename, fmt, kind="sft", **options):
    source = Source(name=filename, kind=kind, format=fmt, path=realdata / filename, on_error="skip", **options)
    items = list(iter_examples(source))
    assert count_records(source) == len(items)  # the plan's count is what reading finds
    return [i for i in items if not isinstance(i, Rejected)], [i for i in items if isinstance(i, Rejected)]


def _texts(example) -> list[str]:
    conversations = [example.messages] if example.messages else list(example.pair.values())
    return [m["content"] for messages in conversations for m in messages]


@pytest.mark.parametrize("filename, num_options", [("medqa_usmle_4options_phrases_no_exclude_test.jsonl", 4),
                                                   ("medqa_usmle_5options_test.jsonl", 5),
                                                   ("medmcqa_dev_medagents_format_2000.jsonl", 4)])
def test_real_medqa_layout_letters_agree_with_the_upstream_answers(realdata, filename, num_options):
    fmt = "medmcqa_medagents" if "medagents" in filename else "medqa"
    examples, rejected = _read(realdata, filename, fmt)
    raw = [json.loads(line) for line in (realdata / filename).read_text().splitlines()]
    assert not rejected and len(examples) == len(raw) in (1273, 2000)
    for example, record in zip(examples, raw):
        letter, stated, _ = _answer(example.messages)
        expected = " ".join(record["answer"].split())
        if expected.endswith('"') and expected.count('"') % 2:  # upstream's stray '\n"' after some last options
            expected = expected[:-1].rstrip()
        assert (letter, stated) == (record["answer_idx"], expected)
        option_lines = example.messages[0]["content"].split("\n\n")[-1].splitlines()
        assert [line[:3] for line in option_lines] == [f"{c}. " for c in "ABCDE"[:num_options]]
        assert not any(line.endswith('"') and line.count('"') == 1 for line in option_lines)


def test_real_pubmedqa_has_labelled_contexts_and_the_decision(realdata):
    examples, rejected = _read(realdata, "pubmedqa_ori_pqal.json", "pubmedqa")
    raw = json.loads((realdata / "pubmedqa_ori_pqal.json").read_text())
    assert not rejected and [e.record_id for e in examples] == list(raw)  # PMIDs as record ids, in file order
    for example in examples:
        record = raw[example.record_id]
        prompt = example.messages[0]["content"]
        assert all(f"{label}: {context.strip()}" in prompt for label, context in zip(record["LABELS"],
                                                                                      record["CONTEXTS"]))
        assert record["QUESTION"] in prompt and prompt.endswith("A. yes\nB. no\nC. maybe")
        assert _answer(example.messages)[1:] == (record["final_decision"], record["LONG_ANSWER"].strip())


@pytest.mark.parametrize("subject, num_rows", [("anatomy", 135), ("clinical_knowledge", 265), ("college_biology", 144),
                                               ("college_medicine", 173), ("medical_genetics", 100),
                                               ("professional_medicine", 282)])
def test_real_mmlu_csvs_read_every_row_with_its_answer(realdata, subject, num_rows):
    filename = f"mmlu_medical/{subject}_test.csv"
    examples, rejected = _read(realdata, filename, "mmlu_csv")
    with open(realdata / filename, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert not rejected and len(examples) == len(rows) == num_rows
    for example, row in zip(examples, rows):
        assert example.messages[0]["content"].startswith(row[0].strip())  # quoted commas/newlines kept
        option = " ".join(row["ABCD".index(row[5]) + 1].split())  # options are rendered on one line
        assert _answer(example.messages)[:2] == (row[5], option)


@pytest.mark.parametrize("filename, fmt, kind, num_records", [
    ("medalpaca_wikidoc_patient_information_2000.json", "alpaca", "sft", 2000),
    ("chatdoctor_genmedgpt5k_2000.json", "alpaca", "sft", 2000),
    ("fastchat_dummy_conversation_sharegpt.json", "sharegpt", "sft", 500),
    ("llamafactory_kto_en_demo_messages.json", "messages", "sft", 300),
    ("llamafactory_dpo_en_demo_sharegpt.json", "sharegpt_preference", "preference", 300),
])
def test_real_dialogue_files_convert_whole_without_crlf(realdata, filename, fmt, kind, num_records):
    examples, rejected = _read(realdata, filename, fmt, kind)
    assert not rejected and len(examples) == num_records
    assert not any("\r" in text for example in examples for text in _texts(example))
    if filename.startswith("chatdoctor"):
        assert b"\r\n" in (realdata / filename).read_bytes()  # the CRLF was there to be removed


def test_real_sharegpt_preference_keeps_the_upstream_answers(realdata):
    filename = "llamafactory_dpo_en_demo_sharegpt.json"
    examples, _ = _read(realdata, filename, "sharegpt_preference", "preference")
    raw = json.loads((realdata / filename).read_text())
    for example, record in zip(examples, raw):
        assert example.pair["prompt"][-1]["role"] == "user"
        assert len(example.pair["prompt"]) == len(record["conversations"])
        assert example.pair["chosen"][0]["content"] == record["chosen"]["value"].replace("\r\n", "\n")


def test_real_hh_rlhf_prompt_is_the_shared_prefix_of_both_transcripts(realdata):
    filename = "hh_rlhf_harmless_base_test_2000.jsonl"
    examples, rejected = _read(realdata, filename, "hh_rlhf", "preference")
    raw = [json.loads(line) for line in (realdata / filename).read_text().splitlines()]
    assert len(examples) + len(rejected) == 2000 and len(rejected) < 20
    by_line = {int(item.position.rsplit(":", 1)[1]): item for item in examples + rejected}
    for line_number, item in by_line.items():
        record = raw[line_number - 1]
        if isinstance(item, Rejected):
            continue
        prefix = "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}"
                         for m in item.pair["prompt"])
        for side in ("chosen", "rejected"):
            rebuilt = f"{prefix}\n\nAssistant: {item.pair[side][0]['content']}"
            assert " ".join(rebuilt.split()) == " ".join(record[side].split())
    for item in rejected:  # each rejected transcript pair really has the defect its reason names
        record = raw[int(item.position.rsplit(":", 1)[1]) - 1]
        chosen_head, _, chosen_last = record["chosen"].rpartition("\n\nAssistant:")
        rejected_head, _, rejected_last = record["rejected"].rpartition("\n\nAssistant:")
        speakers = re.findall(r"\n\n(Human|Assistant):", record["chosen"]) + ["|"] + \
            re.findall(r"\n\n(Human|Assistant):", record["rejected"])
        defect = {"prompt_mismatch": chosen_head.strip() != rejected_head.strip(),
                  "empty_turn": not chosen_last.strip() or not rejected_last.strip(),
                  "bad_roles": any(a == b for a, b in zip(speakers, speakers[1:]))
                  or "Human" in (speakers[speakers.index("|") - 1], speakers[-1])}
        assert defect[item.reason], (item.reason, record)


def test_real_ultrafeedback_flat_rejects_exactly_ties_and_unusable_pairs(realdata):
    filename = "ultrafeedback_binarized_flat_train_clean_1000.jsonl"
    examples, rejected = _read(realdata, filename, "preference_flat", "preference")
    raw = [json.loads(line) for line in (realdata / filename).read_text().splitlines()]
    expected = Counter()
    for record in raw:
        scores = record["metadata"]
        if scores["score_chosen"] == scores["score_rejected"]:
            expected["tied_scores"] += 1
        elif not record["chosen"].strip() or not record["rejected"].strip():
            expected["empty_turn"] += 1
        elif record["chosen"].strip() == record["rejected"].strip():
            expected["identical_pair"] += 1
    assert Counter(r.reason for r in rejected) == expected and expected["tied_scores"] > 50
    assert len(examples) == len(raw) - sum(expected.values())
    assert any("\r" in r["chosen"] + r["rejected"] for r in raw)
    assert not any("\r" in text for example in examples for text in _texts(example))
    kept_with_ties, _ = _read(realdata, filename, "preference_flat", "preference",
                              format_options={"allow_ties": True})
    usable = [r for r in raw if r["chosen"].strip() and r["rejected"].strip()
              and r["chosen"].strip() != r["rejected"].strip()]
    assert len(kept_with_ties) == len(usable) > len(examples)
