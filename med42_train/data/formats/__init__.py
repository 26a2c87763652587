"""Format adapters: one function per upstream record layout, each returning chat messages.

SFT adapters return a list of {"role", "content"} messages; preference adapters return
{"prompt": messages, "chosen": messages, "rejected": messages}. A record that cannot be converted raises
`RecordError(reason, field, message)`, so the reader can report the file, line or record id, and count it.
Adapters take format options as keyword arguments (a recipe's `format_options`).
"""

from __future__ import annotations

from typing import Any, Callable

from med42_train.data.formats.base import (REASONS, Messages, RecordError, RecordFiltered, checked_dialogue,
                                           normalize_newlines)
from med42_train.data.formats.chat import alpaca, messages_format, sharegpt, slimorca
from med42_train.data.formats.mcqa import (MMLU_CSV_COLUMNS, headqa, mcqa_messages, medmcqa, medqa, mmlu_csv,
                                           mmlu_hub, mmlu_pro, pubhealth, pubmedqa, pubmedqa_hub, sciq)
from med42_train.data.formats.preference import (hh_rlhf, preference_flat, sharegpt_preference,
                                                 ultrafeedback_hub)

SFT_FORMATS: dict[str, Callable[..., Messages]] = {
    "alpaca": alpaca,
    "sharegpt": sharegpt,
    "slimorca": slimorca,
    "messages": messages_format,  # OpenAI / UltraChat
    "medqa": medqa,
    "medmcqa": medmcqa,
    "medmcqa_medagents": medqa,  # same layout as MedQA: question, options{A..D}, answer_idx, answer (+ realidx)
    "pubmedqa": pubmedqa,
    "pubmedqa_hub": pubmedqa_hub,
    "mmlu_csv": mmlu_csv,
    "mmlu_hub": mmlu_hub,
    "mmlu_pro": mmlu_pro,
    "headqa": headqa,
    "pubhealth": pubhealth,
    "sciq": sciq,
}
PREFERENCE_FORMATS: dict[str, Callable[..., dict[str, Messages]]] = {
    "preference_flat": preference_flat,
    "hh_rlhf": hh_rlhf,
    "ultrafeedback_hub": ultrafeedback_hub,
    "sharegpt_preference": sharegpt_preference,
}
# Formats whose files are one JSON object mapping record id -> record (PubMedQA's ori_pqal.json).
DICT_FORMATS = frozenset({"pubmedqa"})
# Formats read from headerless CSV, with the column names their adapter expects.
CSV_COLUMNS: dict[str, tuple[str, ...]] = {"mmlu_csv": MMLU_CSV_COLUMNS}
# Format options whose values are a closed set (checked when the recipe loads, not per record).
OPTION_CHOICES: dict[tuple[str, str], tuple[Any, ...]] = {
    ("medmcqa", "cop_base"): (0, 1),
    ("preference_flat", "allow_ties"): (True, False),
    ("ultrafeedback_hub", "allow_ties"): (True, False),
}

__all__ = ["CSV_COLUMNS", "DICT_FORMATS", "Messages", "OPTION_CHOICES", "PREFERENCE_FORMATS", "REASONS",
           "RecordError", "RecordFiltered", "SFT_FORMATS", "checked_dialogue", "mcqa_messages",
           "normalize_newlines"] + [f.__name__ for f in (*SFT_FORMATS.values(), *PREFERENCE_FORMATS.values())]
