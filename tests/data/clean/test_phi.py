"""PHI/PII screen: hand-written positives and negatives (from the spec, not from the scanner), masking, and
measurements on real files."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from med42_train.data.clean import phi
from med42_train.data.clean.phi import PhiHit, PhiScanner
from tests.data.clean.realtexts import read_alpaca_texts

# (text, kind, the identifying value the hit must cover exactly)
POSITIVES = [
    ("Please email me at jane.doe@example.org tomorrow.", "email", "jane.doe@example.org"),
    ("Contact: a_b+tag@mail.hospital.co.uk", "email", "a_b+tag@mail.hospital.co.uk"),
    ("Call the clinic at (555) 123-4567 after 5pm.", "phone", "(555) 123-4567"),
    ("My number is 555-123-4567.", "phone", "555-123-4567"),
    ("Text 555.123.4567 anytime", "phone", "555.123.4567"),
    ("US office: +1 555 123 4567", "phone", "+1 555 123 4567"),
    ("London: +44 20 7946 0958.", "phone", "+44 20 7946 0958"),
    ("India: +91-98765-43210", "phone", "+91-98765-43210"),
    ("Paris +33 1 42 68 53 00", "phone", "+33 1 42 68 53 00"),
    ("Phone number: 04712200915", "phone", "04712200915"),
    ("call me at 555 123 4567", "phone", "555 123 4567"),
    ("His SSN is 123-45-6789.", "ssn", "123-45-6789"),
    ("SSN: 123 45 6789", "ssn", "123 45 6789"),
    ("social security number 123456789", "ssn", "123456789"),
    ("Found 987-65-4321 on the form", "ssn", "987-65-4321"),
    ("MRN: 1234567", "mrn", "1234567"),
    ("medical record number 12345678", "mrn", "12345678"),
    ("Patient ID: AB123456", "mrn", "AB123456"),
    ("mrn#0045678 admitted", "mrn", "0045678"),
    ("DOB: 01/02/1980", "date_of_birth", "01/02/1980"),
    ("born on March 3, 1980 in Ohio", "date_of_birth", "March 3, 1980"),
    ("Date of birth: 1980-03-02", "date_of_birth", "1980-03-02"),
    ("D.O.B. 3/4/75", "date_of_birth", "3/4/75"),
    ("She was born 12 March 1980.", "date_of_birth", "12 March 1980"),
    ("born in March 2001 at term", "date_of_birth", "March 2001"),  # month + year is still a HIPAA date element
    ("She lives at 123 Main Street.", "address", "123 Main Street."),
    ("Send it to 4500 Oak Ave, Springfield", "address", "4500 Oak Ave"),
    ("1600 Pennsylvania Avenue NW, Washington", "address", "1600 Pennsylvania Avenue NW"),
    ("Clinic at 77 Sunset Blvd", "address", "77 Sunset Blvd"),
    ("Apartment at 456 5th Avenue", "address", "456 5th Avenue"),
]

# Ordinary medical text: nothing here identifies a person.
NEGATIVES = [
    "Amoxicillin 500 mg twice daily for 10 days.",
    "Hb 12.5 g/dL, WBC 7.2 x 10^9/L, platelets 150,000-450,000/µL.",
    "BP 120/80 mmHg, HR 88, RR 16, SpO2 98% on room air.",
    "He was born in 1980 and diagnosed in 2015.",
    "A 45-year-old man, aged 45, presents with chest pain.",
    "ICD-10 code E11.9 (type 2 diabetes); I21.4 for NSTEMI.",
    "Normal range 3.5-5.0 mmol/L; sodium 135-145 mEq/L; INR 2.0-3.0.",
    "PMID: 31234567. doi: 10.1056/NEJMoa2034577. Trial NCT04280705.",
    "Call 911 immediately if symptoms worsen.",
    "Take 1-2 tablets every 4-6 hours, maximum 8 per 24 hours.",
    "eGFR 60 mL/min/1.73 m2; HbA1c 7.2%; stage T2N1M0.",
    "Karyotype 46,XY,t(2;5)(p23;q35) was found.",
    "ISBN 978-0-07-180215-4, 2019-2020 edition, pages 123-456.",
    "Scored 24/30 on the MMSE on 01/02/2020.",  # a visit date is not a date of birth (the screen's scope)
    "Take 2 St John's wort capsules; contact dermatitis in 3 patients.",
    "The patient record was reviewed; the chart number of admissions was 3.",
    "Dose 0.5-1.0 mg/kg every 8 hours; change of +12.5 mmHg; z-score +1.5.",
    "Babies born with a heart defect; 1 in 2,500 births; born at 32 weeks; born on day 3 of life.",
    # Citations: volume/issue/page runs look like digit groups but are not phone numbers.
    "Ann Intern Med. 2009;151(4):264-269. N Engl J Med 2020; 382:1787-1799.",
    "Lancet 2016; 388(10053): 1459-1544. JAMA. 2014;311(5):507-520. doi:10.1001/jama.2013.284427",
    "Circulation. 2019;140:e596-e646; PLoS One 2018 Mar 3;12(3):e0173451.",
    "chr7:117,559,590-117,559,593; HLA-B*57:01; ECG at 08:15:30, 12-lead.",
]


@pytest.mark.parametrize("text,kind,value", POSITIVES)
def test_identifier_is_found_with_its_exact_span(text, kind, value):
    start = text.index(value)
    assert PhiScanner().scan(text) == [PhiHit(kind, start, start + len(value))]


@pytest.mark.parametrize("text", NEGATIVES)
def test_medical_text_is_not_flagged(text):
    assert PhiScanner().scan(text) == []
    assert PhiScanner().mask(text) == text


def test_mask_replaces_values_and_keeps_keywords():
    text = "Reach me at jane@example.org or (555) 123-4567; MRN: 7654321, DOB: 01/02/1980, SSN 123-45-6789, " \
           "home 123 Main Street"
    assert PhiScanner().mask(text) == ("Reach me at [EMAIL] or [PHONE]; MRN: [MRN], DOB: [DOB], SSN [SSN], "
                                       "home [ADDRESS]")


def test_real_medical_texts_have_no_hits(clean_texts):
    """Measured on the 4000 wikidoc + ChatDoctor texts: 0 hits. Checked by eye with a grep for '@', 'born',
    'DOB', 'street', 'MRN', 'SSN' and 3-3-4 digit runs: these sources hold no identifiers (the only hits of that
    grep are 'babies are born with ...'), so any hit would be a false positive."""
    hits = Counter(hit.kind for text in clean_texts for hit in PhiScanner().scan(text))
    assert hits == Counter()


def test_real_identifiers_in_hh_rlhf_are_found(realdata):
    """HH-RLHF red-team dialogues ask for people's contact details. Measured on the 2000 'chosen' transcripts: 28
    hits in 22 dialogues; all inspected by eye and all real addresses/phones/emails (e.g. '390 Windsor Street',
    '+1 (555) 555-5555', 'mike@robertlight.com'). Two address hits are one repeated address ('... Court' and
    '... Court.')."""
    lines = (realdata / "hh_rlhf_harmless_base_test_2000.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["chosen"] for line in lines]
    found = [(text[hit.start:hit.end], hit.kind) for text in texts for hit in PhiScanner().scan(text)]
    assert Counter(kind for _, kind in found) == Counter(address=18, phone=7, email=3)
    for sample in [("390 Windsor Street", "address"), ("+1 (555) 555-5555", "phone"),
                   ("mike@robertlight.com", "email"), ("(647) 321-1199", "phone"), ("14660 Kraft Blvd.", "address")]:
        assert sample in found


def _ungated_scan(text: str) -> list[PhiHit]:
    """scan() with every rule run on every text (no keyword or digit gates), and the address rule in its plain
    form "\\b\\d{1,5}...": the gates and the rewritten address pattern must only save time."""
    plain_address = re.compile(rf"\b(\d{{1,5}}\s+(?:(?:[A-Z][a-z]+|\d{{1,3}}(?:st|nd|rd|th))\s+){{1,3}}"
                               rf"(?:{'|'.join(phi._STREET_SUFFIXES)})\b\.?(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?)")
    hits: list[PhiHit] = []
    for rule in phi._RULES:
        pattern = plain_address if rule.kind == "address" else rule.pattern
        for match in pattern.finditer(text):
            start, end = match.span(1)
            if phi._plausible(rule.kind, text[start:end]) and not any(h.start < end and start < h.end for h in hits):
                hits.append(PhiHit(rule.kind, start, end))
    return sorted(hits, key=lambda hit: hit.start)


def test_gates_never_skip_a_hit():
    pieces = [text for text, _, _ in POSITIVES] + NEGATIVES + [
        "12 Main St", "a12 Main Street", "5 5th Ave N", "MRN", "12345", "٣٤٥٦٧٨٩", "mrn ١٢٣٤٥٦٧", "DOB", "3/4/75",
        "phone", "+44", "20 7946", "0958", "555-12", "3-4567", "SSN", "born in", "Oak Rd.", "ＭＲＮ: 1234567", " ", "\n"]
    rng, scanner = random.Random(0), PhiScanner()
    assert _ungated_scan("MRN: 1234567") == [PhiHit("mrn", 5, 12)]  # the reference itself finds hits
    for _ in range(5000):
        text = rng.choice(["", " ", "\n"]).join(rng.choice(pieces) for _ in range(rng.randrange(1, 6)))
        assert scanner.scan(text) == _ungated_scan(text), repr(text)
