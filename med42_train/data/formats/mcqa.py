"""Multiple-choice layouts. Every one goes through `mcqa_messages`, so all MCQA sources look alike to the model:

user:      the question, a blank line, then one "A. option" line per option
assistant: "The answer is X. <option text>", then "\n\nExplanation: ..." when the source has one
"""

from __future__ import annotations

import hashlib
import random
import string
from typing import Any, Optional, Sequence

from med42_train.data.formats.base import (Messages, RecordError, RecordFiltered, items, optional_text, text,
                                           turn)

PUBMEDQA_DECISIONS = ("yes", "no", "maybe")
PUBHEALTH_LABELS = ("false", "mixture", "true", "unproven")  # health_fact's label ids 0..3
PUBHEALTH_QUESTION = "Is the following health claim true, false, a mixture of true and false, or unproven?"


def clean_option(option: str) -> str:
    """An option on one line: whitespace runs collapsed, and a dangling quote dropped.

    MedQA's upstream jsonl ends ~100 last options of the test sets with a stray '\n"' (a CSV conversion
    artifact, e.g. 'Naloxone\n"'); a newline inside an option would also break the one-line-per-letter layout.
    """
    option = " ".join(option.split())
    if option.endswith('"') and option.count('"') % 2 == 1:
        option = option[:-1].rstrip()
    return option


def mcqa_messages(question: str, options: Sequence[str], answer_index: int, explanation: str = "") -> Messages:
    """The one rendering of a multiple-choice item shared by every MCQA format."""
    letters = string.ascii_uppercase[: len(options)]
    options = [clean_option(option) for option in options]
    lines = [question.strip(), ""] + [f"{letter}. {option}" for letter, option in zip(letters, options)]
    answer = f"The answer is {letters[answer_index]}. {options[answer_index]}"
    if explanation.strip():
        answer += f"\n\nExplanation: {explanation.strip()}"
    return [turn("user", "\n".join(lines)), turn("assistant", answer)]


def _lettered_options(record: dict[str, Any], key: str = "options") -> dict[str, str]:
    options = items(record, key, dict, min_len=2)
    letters = list(string.ascii_uppercase[: len(options)])
    if sorted(options) != letters:
        raise RecordError("wrong_type", key, f"field '{key}' has keys {sorted(options)}, expected {letters}")
    return {letter: text(options, letter, where=f"{key}.") for letter in letters}


def _letter_index(letter: Any, letters: Sequence[str], field: str) -> int:
    if not isinstance(letter, str):
        raise RecordError("wrong_type", field, f"field '{field}' is {type(letter).__name__}, not a letter")
    if letter.strip() not in letters:
        raise RecordError("answer_out_of_range", field,
                          f"field '{field}'={letter!r} is not one of the options {list(letters)}")
    return list(letters).index(letter.strip())


def _integer(record: dict[str, Any], key: str) -> int:
    value = record.get(key)
    if value is None:
        raise RecordError("missing_field", key, f"field '{key}' is missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError("wrong_type", key, f"field '{key}' is {type(value).__name__}, not an integer")
    return value


def medqa(record: dict[str, Any]) -> Messages:
    """MedQA (jind11) jsonl, 4 or 5 options: question, options {A..}, answer_idx, answer (the option text).

    The same layout as the MedAgents benchmark copy of MedMCQA (question, realidx, options, answer_idx, answer),
    registered as `medmcqa_medagents`. A stated `answer` that differs from the indexed option is a broken record.
    """
    options = _lettered_options(record)
    index = _letter_index(record.get("answer_idx"), list(options), "answer_idx")
    letter = list(options)[index]
    stated = clean_option(optional_text(record, "answer"))
    if stated and stated != clean_option(options[letter]):
        raise RecordError("answer_mismatch", "answer", f"field 'answer'={stated[:80]!r} differs from option "
                                                       f"{letter} ({options[letter][:80]!r}) named by 'answer_idx'")
    return mcqa_messages(text(record, "question"), list(options.values()), index)


def medmcqa(record: dict[str, Any], cop_base: int = 0) -> Messages:
    """MedMCQA upstream: question, opa..opd, cop (correct option), exp, subject_name, topic_name, id, choice_type.

    `cop` is 0-based on the hub copy (openlifescienceai/medmcqa, the default here) and 1-based in the original
    GitHub json release: set format_options.cop_base=1 for the latter. Guessing per record is impossible (0..3 and
    1..4 overlap), so a wrong base shows up as answer_out_of_range rejects on the records with the last option.
    """
    options = [text(record, key) for key in ("opa", "opb", "opc", "opd")]
    cop = _integer(record, "cop")
    index = cop - cop_base
    if not 0 <= index < len(options):
        raise RecordError("answer_out_of_range", "cop",
                          f"field 'cop'={cop} is outside {cop_base}..{cop_base + 3} (format_options.cop_base="
                          f"{cop_base}; the hub copy is 0-based, the original GitHub json 1-based)")
    return mcqa_messages(text(record, "question"), options, index, optional_text(record, "exp"))


def _pubmedqa(question: str, contexts: list, labels: Optional[list], decision: Any, long_answer: str,
              where: str) -> Messages:
    """PubMedQA as MCQA: labelled abstract sections, the question, options yes/no/maybe, long answer after."""
    if labels is not None and len(labels) != len(contexts):
        raise RecordError("wrong_type", f"{where}LABELS", f"{len(labels)} labels for {len(contexts)} contexts")
    paragraphs = []
    for index, context in enumerate(contexts):
        body = text({"c": context}, "c", where=f"{where}CONTEXTS[{index}].").strip()
        paragraphs.append(f"{labels[index]}: {body}" if labels and isinstance(labels[index], str) else body)
    if decision not in PUBMEDQA_DECISIONS:
        raise RecordError("answer_out_of_range", "final_decision",
                          f"field 'final_decision'={decision!r} is not one of {list(PUBMEDQA_DECISIONS)}")
    prompt = "Context:\n" + "\n".join(paragraphs) + f"\n\nQuestion: {question.strip()}"
    return mcqa_messages(prompt, PUBMEDQA_DECISIONS, PUBMEDQA_DECISIONS.index(decision), long_answer)


def pubmedqa(record: dict[str, Any]) -> Messages:
    """PubMedQA ori_pqal value (the file is a dict PMID -> record): QUESTION, CONTEXTS, LABELS, final_decision,
    LONG_ANSWER."""
    contexts = items(record, "CONTEXTS", list)
    labels = record.get("LABELS")
    return _pubmedqa(text(record, "QUESTION"), contexts, labels if isinstance(labels, list) else None,
                     record.get("final_decision"), optional_text(record, "LONG_ANSWER"), "")


def pubmedqa_hub(record: dict[str, Any]) -> Messages:
    """PubMedQA on the hub (qiaojin/PubMedQA pqa_labeled): pubid, question, context{contexts, labels},
    long_answer, final_decision."""
    context = items(record, "context", dict)
    contexts = items(context, "contexts", list)
    labels = context.get("labels")
    return _pubmedqa(text(record, "question"), contexts, labels if isinstance(labels, list) else None,
                     record.get("final_decision"), optional_text(record, "long_answer"), "context.")


MMLU_CSV_COLUMNS = ("question", "A", "B", "C", "D", "answer")


def mmlu_csv(record: dict[str, Any]) -> Messages:
    """MMLU original release: headerless CSV rows question,A,B,C,D,answer_letter (read into MMLU_CSV_COLUMNS)."""
    letters = MMLU_CSV_COLUMNS[1:5]
    index = _letter_index(record.get("answer"), letters, "answer")
    return mcqa_messages(text(record, "question"), [text(record, letter) for letter in letters], index)


def _indexed_choices(record: dict[str, Any], choices_key: str, answer_key: str) -> Messages:
    """question + a list of choices + a 0-based answer index (cais/mmlu, MMLU-Pro)."""
    choices = items(record, choices_key, list, min_len=2)
    options = [text({"c": choice}, "c", where=f"{choices_key}[{i}].") for i, choice in enumerate(choices)]
    answer = _integer(record, answer_key)
    if not 0 <= answer < len(options):
        raise RecordError("answer_out_of_range", answer_key,
                          f"field '{answer_key}'={answer} is outside 0..{len(options) - 1}")
    return mcqa_messages(text(record, "question"), options, answer)


def _keep_only(record: dict[str, Any], key: str, allowed: Optional[Sequence[str]]) -> None:
    if allowed is not None and record.get(key) not in allowed:
        raise RecordFiltered(key, f"{key} {record.get(key)!r} is not in the format options' list")


def mmlu_hub(record: dict[str, Any], subjects: Optional[Sequence[str]] = None) -> Messages:
    """MMLU on the hub (cais/mmlu): question, subject, choices[4], answer (0-based); `subjects` keeps a subset."""
    _keep_only(record, "subject", subjects)
    return _indexed_choices(record, "choices", "answer")


def mmlu_pro(record: dict[str, Any], categories: Optional[Sequence[str]] = None) -> Messages:
    """MMLU-Pro (TIGER-Lab/MMLU-Pro): question, options[up to 10], answer_index (0-based), category;
    `categories` keeps a subset (e.g. [health])."""
    _keep_only(record, "category", categories)
    return _indexed_choices(record, "options", "answer_index")


def headqa(record: dict[str, Any]) -> Messages:
    """HEAD-QA (dvilares/head_qa): qid, qtext, answers [{aid, atext}], ra (the correct aid, 1-based), image.

    Questions that come with an image cannot be answered from the text alone, so they are rejected.
    """
    if record.get("image"):
        raise RecordError("image_required", "image", "field 'image' is set: the question needs its image")
    answers = items(record, "answers", list, min_len=2)
    if not all(isinstance(a, dict) and isinstance(a.get("aid"), int) for a in answers):
        raise RecordError("wrong_type", "answers", "field 'answers' must be [{aid: int, atext: str}, ...]")
    answers = sorted(answers, key=lambda a: a["aid"])
    aids = [a["aid"] for a in answers]
    if record.get("ra") not in aids:
        raise RecordError("answer_out_of_range", "ra", f"field 'ra'={record.get('ra')!r} is not one of aids {aids}")
    options = [text(a, "atext", where=f"answers[aid={a['aid']}].") for a in answers]
    return mcqa_messages(text(record, "qtext"), options, aids.index(record["ra"]))


def sciq(record: dict[str, Any]) -> Messages:
    """SciQ (allenai/sciq): question, distractor1..3, correct_answer, support (shown as the explanation).

    Upstream lists the correct answer apart from the distractors; the options are shuffled with a seed taken from
    the record itself, so the correct letter varies across records yet a record always renders the same way.
    """
    question, correct = text(record, "question"), text(record, "correct_answer")
    options = [correct] + [text(record, f"distractor{i}") for i in (1, 2, 3)]
    seed = int.from_bytes(hashlib.sha256(f"{question}\x00{correct}".encode()).digest()[:8], "big")
    order = list(range(len(options)))
    random.Random(seed).shuffle(order)
    return mcqa_messages(question, [options[i] for i in order], order.index(0), optional_text(record, "support"))


def pubhealth(record: dict[str, Any]) -> Messages:
    """PubHealth (health_fact): claim, label (0 false, 1 mixture, 2 true, 3 unproven; -1 unlabelled), explanation.

    A fact-checking verdict as MCQA: the claim with the four verdicts as options, the journalists' explanation
    after the answer. Unlabelled claims (-1) are answer_out_of_range.
    """
    label = _integer(record, "label")
    if not 0 <= label < len(PUBHEALTH_LABELS):
        raise RecordError("answer_out_of_range", "label", f"field 'label'={label} is outside 0..3 (-1: unlabelled)")
    question = f"{PUBHEALTH_QUESTION}\n\nClaim: {text(record, 'claim').strip()}"
    return mcqa_messages(question, PUBHEALTH_LABELS, label, optional_text(record, "explanation"))
