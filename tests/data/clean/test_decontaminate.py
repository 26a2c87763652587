"""Decontamination against real MedQA / PubMedQA / MMLU test items planted, verbatim and altered, into real
training texts (wikidoc + ChatDoctor), plus small hand-written cases for the matching rules."""

from __future__ import annotations

import random
import re

import pytest

from med42_train.data.clean.decontaminate import Contamination, Decontaminator, split_item
from med42_train.data.clean.normalize import normalize_text, words

from tests.data.clean.realtexts import MMLU_SUBJECTS, format_mcqa, read_medqa, read_mmlu, read_pubmedqa_test

PLANTED_ITEMS_PER_BENCHMARK = 40
SHORT_STEM_ITEMS_PER_BENCHMARK = 15  # MMLU items whose stem is under 13 words: the options must confirm them


# ---- real benchmarks, indexed ----
@pytest.fixture(scope="module")
def benchmarks(realdata) -> dict[str, list[tuple[str, str, list[str]]]]:
    """name -> [(item id, question stem, options)]; PubMedQA items have the contexts in the stem, no options."""
    return {
        "medqa_test": read_medqa(realdata / "medqa_usmle_4options_phrases_no_exclude_test.jsonl"),
        "pubmedqa_test": [(pmid, text, []) for pmid, text in read_pubmedqa_test(realdata)],
        **{f"mmlu_{s}": read_mmlu(realdata / "mmlu_medical" / f"{s}_test.csv") for s in MMLU_SUBJECTS},
    }


def index_benchmarks(benchmarks) -> Decontaminator:
    """MedQA is indexed as parts (question, *options); the others as one text, as the SFT user turn shows them."""
    found = Decontaminator(ngram_words=13)
    for name, items in benchmarks.items():
        if name == "medqa_test":
            found.add_benchmark(name, [(item_id, (stem, *options)) for item_id, stem, options in items])
        else:
            found.add_benchmark(name, [(item_id, format_mcqa(stem, options) if options else stem)
                                       for item_id, stem, options in items])
    return found


@pytest.fixture(scope="module")
def decontaminator(benchmarks) -> Decontaminator:
    return index_benchmarks(benchmarks)


def _same_item_ids(benchmarks) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(benchmark, id) -> every (benchmark, id) with the same normalized stem and options (MMLU repeats items)."""
    by_text: dict[tuple, set] = {}
    for name, items in benchmarks.items():
        for item_id, stem, options in items:
            key = (normalize_text(stem), *sorted(map(normalize_text, options)))
            by_text.setdefault(key, set()).add((name, item_id))
    return {member: group for group in by_text.values() for member in group}


# ---- alterations a copied item may have gone through ----
def _case(text: str, rng: random.Random) -> str:
    return rng.choice([str.upper, str.lower, str.swapcase])(text)


def _whitespace(text: str, rng: random.Random) -> str:
    return re.sub(r"\s+", lambda _: rng.choice(["  ", "\n", "\n\n", " \t ", "\r\n   "]), text)


def _punctuation(text: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return re.sub(r"[^\w\s]", "", text)
    return text.translate(str.maketrans({".": ";", ",": " -", "?": "!", "(": "[", ")": "]", "'": "`"}))


def _as_sft(stem: str, options: list[str], rng: random.Random) -> str:
    """Our SFT layout with the options in another order and an answer sentence after them."""
    if not options:  # PubMedQA: contexts first, then the question, then the decision
        question, _, contexts = stem.partition("\n\n")
        return f"Context: {contexts}\n\nQuestion: {question}\n\nThe answer is yes."
    shift = rng.randrange(1, len(options))
    reordered = options[shift:] + options[:shift]
    return f"{format_mcqa(stem, reordered)}\n\nThe answer is A. {reordered[0]}."


def planted_variants(stem: str, options: list[str], rng: random.Random, clean: list[str]) -> dict[str, str]:
    verbatim = format_mcqa(stem, options) if options else stem
    everything = _whitespace(_punctuation(_as_sft(stem, options, rng), rng).lower(), rng)
    return {
        "verbatim": verbatim,
        "case": _case(verbatim, rng),
        "whitespace": _whitespace(verbatim, rng),
        "punctuation": _punctuation(verbatim, rng),
        "reordered_sft": _as_sft(stem, options, rng),
        "all_inside_clean_text": f"{rng.choice(clean)}\n\n{everything}\n\n{rng.choice(clean)}",
    }


def _items_to_plant(name: str, items: list, rng: random.Random) -> list:
    chosen = rng.sample(items, min(PLANTED_ITEMS_PER_BENCHMARK, len(items)))
    short = [item for item in items if item[2] and len(words(item[1])) < 13 and item not in chosen]
    return chosen + rng.sample(short, min(SHORT_STEM_ITEMS_PER_BENCHMARK, len(short)))


@pytest.fixture(scope="module")
def planted(benchmarks, clean_texts) -> list[tuple[str, str, str, str]]:
    """(benchmark, item id, variant, text) for every planted training sample."""
    rng = random.Random(1234)
    samples = []
    for name, items in benchmarks.items():
        for item_id, stem, options in _items_to_plant(name, items, rng):
            for variant, text in planted_variants(stem, options, rng, clean_texts).items():
                samples.append((name, item_id, variant, text))
    return samples


def test_planted_items_removed_with_right_item_and_nothing_clean(decontaminator, benchmarks, planted, clean_texts):
    corpus = [(None, text) for text in clean_texts] + [(sample, sample[3]) for sample in planted]
    random.Random(7).shuffle(corpus)
    hits = decontaminator.find_many([text for _, text in corpus])
    same_items = _same_item_ids(benchmarks)

    missed = [sample[:3] for (sample, _), hit in zip(corpus, hits) if sample and hit is None]
    wrong = [(sample[:3], hit) for (sample, _), hit in zip(corpus, hits)
             if sample and hit and (hit.benchmark, hit.item_id) not in same_items[sample[:2]]]
    clean_removed = [(text[:200], hit) for (sample, text), hit in zip(corpus, hits) if not sample and hit]
    assert not missed, f"{len(missed)} of {len(planted)} planted samples not found, e.g. {missed[:5]}"
    assert not wrong, f"matched to the wrong item: {wrong[:5]}"
    # Measured: 0 of the 4000 real wikidoc/ChatDoctor texts shares a 13-gram (or a short stem with all its
    # options) with any of the 2,872 indexed items; the data and the code are fixed, so any removal is a change.
    assert not clean_removed, f"clean texts removed: {clean_removed[:3]}"


def test_report_counts_planted_samples_per_benchmark(benchmarks, planted):
    decontaminator = index_benchmarks(benchmarks)
    decontaminator.find_many([text for *_, text in planted])
    report = decontaminator.report()
    same_items = _same_item_ids(benchmarks)
    for name, items in benchmarks.items():
        expected_ids = {item_id for sample in planted for bench, item_id in same_items[sample[:2]] if bench == name}
        expected_samples = sum(any(bench == name for bench, _ in same_items[sample[:2]]) for sample in planted)
        assert report[name]["items_indexed"] == len(items) and report[name]["items_unindexable"] == 0
        assert report[name]["items_matched"] == len(expected_ids), name
        assert report[name]["samples_removed"] == expected_samples, name
        assert all(example["item_id"] in {item_id for item_id, *_ in items} for example in report[name]["examples"])
        assert all(len(example["ngram"].split()) >= 1 for example in report[name]["examples"])


# ---- the matching rules, on hand-written items ----
STEM = ("A 54-year-old woman comes to the physician because of a 3-month history of fatigue, weight gain and "
        "cold intolerance; her TSH is elevated. Which of the following is the most likely diagnosis?")
OPTIONS = ["Hashimoto thyroiditis", "Graves disease", "Subacute thyroiditis", "Pituitary adenoma"]
CLEAN = "Hypothyroidism is common in older women and is treated with levothyroxine taken every morning."


def test_short_stem_needs_all_options_in_any_order():
    found = Decontaminator(ngram_words=13)
    found.add_benchmark("quiz", [("q1", ("Which of the following is true?", "Aspirin", "Heparin", "Warfarin"))])
    assert found.find("which of the following is TRUE??  C) Warfarin  A) Aspirin  B) Heparin") == Contamination(
        "quiz", "q1", "which of the following is true")
    assert found.find("Which of the following is true? Aspirin and Heparin only.") is None
    assert found.find("Heparin, warfarin and aspirin: which of the following is true") is not None


def test_short_item_without_options_matches_its_whole_text_only():
    found = Decontaminator(ngram_words=13)
    found.add_benchmark("short", [("s1", "Is metformin safe in pregnancy?")])
    assert found.find(f"{CLEAN} IS METFORMIN SAFE IN PREGNANCY") == Contamination(
        "short", "s1", "is metformin safe in pregnancy")
    assert found.find("Is metformin safe in early pregnancy?") is None


def test_long_stem_found_through_option_reordering_and_configurable_n():
    for ngram_words in (8, 13, 20):
        found = Decontaminator(ngram_words=ngram_words)
        found.add_benchmark("exam", [("e1", format_mcqa(STEM, OPTIONS))])
        hit = found.find(f"{CLEAN}\n{format_mcqa(STEM.upper(), OPTIONS[::-1])}\nThe answer is D.")
        assert hit is not None and hit.item_id == "e1" and len(hit.ngram.split()) == ngram_words
        assert hit.ngram in normalize_text(STEM)
        assert found.find(CLEAN) is None


def test_one_changed_word_per_window_escapes_but_one_intact_window_is_enough():
    """The stated limit: a 13-gram match needs 13 consecutive unchanged words."""
    found = Decontaminator(ngram_words=13)
    found.add_benchmark("exam", [("e1", STEM)])
    stem_words = STEM.split()
    every_tenth_changed = " ".join("X" if i % 10 == 5 else w for i, w in enumerate(stem_words))
    assert found.find(every_tenth_changed) is None
    assert found.find(" ".join(stem_words[:14])) is not None


def test_boilerplate_ngrams_shared_by_many_items_are_not_evidence():
    boilerplate = "which of the following is the most appropriate next step in management of this patient"
    items = [(f"i{k}", f"Patient number {k} has condition {k} with findings {k}. {boilerplate}") for k in range(3)]
    found = Decontaminator(ngram_words=13, common_ngram_items=3)
    found.add_benchmark("exam", items)
    assert found.find(f"Our case: {boilerplate}?") is None
    assert found.find(items[1][1]).item_id == "i1"


def test_split_item_reads_lettered_option_lines():
    assert split_item(format_mcqa(STEM, OPTIONS)) == (STEM, OPTIONS)
    assert split_item("Q?\n(A) one\n(B) two") == ("Q?", ["one", "two"])
    # A line that merely starts like an option ("A. baumannii ...") is not an option list.
    assert split_item("Context.\nA. baumannii was isolated.") == ("Context.\nA. baumannii was isolated.", [])
    assert split_item(("Q?", "x", "y")) == ("Q?", ["x", "y"])


def test_bad_items_are_rejected_with_benchmark_and_item():
    found = Decontaminator()
    with pytest.raises(ValueError, match=r"benchmark 'b' item #0: expected an \(item_id, text\) pair"):
        found.add_benchmark("b", ["just text"])
    with pytest.raises(ValueError, match=r"benchmark 'b' item 'x1': text must be a string"):
        found.add_benchmark("b", [("x1", 42)])


def test_duplicate_item_in_two_benchmarks_counts_for_both():
    found = Decontaminator()
    found.add_benchmark("first", [("f1", STEM)])
    found.add_benchmark("second", [("s9", STEM)])
    assert found.find(STEM) == Contamination("first", "f1", " ".join(words(STEM)[:13]))
    report = found.report()
    assert report["second"]["samples_removed"] == 1 and report["second"]["examples"][0]["item_id"] == "s9"
