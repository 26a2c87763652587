"""PHI/PII screen: finds emails, phone numbers, SSN-like and MRN-like numbers, dates of birth and street addresses.

Guarantees: every pattern needs a clear shape or a keyword, so ordinary medical text is not flagged: doses
("500 mg twice daily"), lab values and vitals ("Hb 12.5 g/dL", "BP 120/80"), years and ages ("1980",
"45-year-old"), reference ranges ("3.5-5.0"), ICD codes ("I21.4"), PMIDs, DOIs and trial numbers. Dates count as
a date of birth only next to a birth keyword ("DOB:", "date of birth", "born on"); MRNs only after a record-number
keyword; phone numbers need a US 3-3-4 shape with separators, a leading "+", or a phone keyword ("phone number:"), and 10-15 digits in all.
`mask` keeps the keywords and replaces only the identifying value ("MRN: [MRN]").

Does not: de-identify. This is a screen for the common structured identifiers, not a HIPAA Safe Harbor tool: it
misses names, free-text locations, ages over 89, non-birth dates, URLs, IPs, account/licence/device numbers, and
identifiers written in words; it can also flag fictional identifiers in made-up dialogues. Use its report to
decide whether a source needs a real de-identification pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
          r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DATE = (rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})|\d{{4}}-\d{{2}}-\d{{2}}"
         rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}"
         rf"|{_MONTH},?\s+\d{{4}})")
_STREET_SUFFIX = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|Terrace"
                  r"|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq)")
# (kind, pattern, group holding the identifying value). Order matters: earlier kinds win overlapping spans.
_PATTERNS: tuple[tuple[str, re.Pattern, int], ...] = (
    ("email", re.compile(r"(?<![\w.+-])([\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})\b"), 1),
    ("ssn", re.compile(r"(?<![\w-])(\d{3}-\d{2}-\d{4})(?![\w-])"
                       r"|(?i:\b(?:ssn|social security(?: number| no\.?)?)\s*(?:is|:|#)?\s*)(\d{3}[ -]?\d{2}[ -]?\d{4})\b"),
     0),
    ("mrn", re.compile(r"(?i:\b(?:mrn|medical record(?: number| no\.?| #)?|med\.? rec\.?(?: no\.?| #)?"
                       r"|patient id|hospital number|chart (?:number|no\.?))\b\s*(?:is|was|:|#|no\.?)?\s*[:#]?\s*)"
                       r"([A-Z]{0,3}-?\d{5,10})\b"), 1),
    ("date_of_birth", re.compile(rf"(?i:\b(?:dob|d\.o\.b\.?|date of birth|birth ?date|born(?: on| in)?)\s*[:\-]?\s*)"
                                 rf"(?i:({_DATE}))\b"), 1),
    ("phone", re.compile(r"(?<![\w+/.-])((?:\+?1[ .-]?)?(?:\(\d{3}\)\s?|\d{3}[.-])\d{3}[.-]\d{4})(?![\w/-]|\.\d)"
                         r"|(?<![\w+])(\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5})(?![\w/-]|\.\d)"
                         r"|(?i:\b(?:phone|tel|telephone|cell|mobile|fax|contact|call me at|reach me at)\b"
                         r"(?:\s+(?:number|no\.?))?\s*(?:is|:|#)?\s*)(\+?\(?\d[\d ().-]{7,16}\d)(?![\w/-]|\.\d)"), 0),
    ("address", re.compile(rf"\b(\d{{1,5}}\s+(?:(?:[A-Z][a-z]+|\d{{1,3}}(?:st|nd|rd|th))\s+){{1,3}}{_STREET_SUFFIX}\b\.?"
                           rf"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?)"), 1),
)
MASKS = {"email": "[EMAIL]", "phone": "[PHONE]", "ssn": "[SSN]", "mrn": "[MRN]", "date_of_birth": "[DOB]",
         "address": "[ADDRESS]"}


@dataclass(frozen=True)
class PhiHit:
    kind: str
    start: int
    end: int


class PhiScanner:
    """`scan(text)` lists identifier spans; `mask(text)` replaces each with its [KIND] placeholder."""

    def scan(self, text: str) -> list[PhiHit]:
        """Non-overlapping hits sorted by start; where two kinds overlap, the earlier kind in _PATTERNS wins."""
        hits: list[PhiHit] = []
        for kind, pattern, group in _PATTERNS:
            for match in pattern.finditer(text):
                start, end = _value_span(match, group)
                if _plausible(kind, text[start:end]) and not any(h.start < end and start < h.end for h in hits):
                    hits.append(PhiHit(kind, start, end))
        return sorted(hits, key=lambda hit: hit.start)

    def mask(self, text: str) -> str:
        pieces, previous_end = [], 0
        for hit in self.scan(text):
            pieces += [text[previous_end:hit.start], MASKS[hit.kind]]
            previous_end = hit.end
        return "".join(pieces) + text[previous_end:]


def _value_span(match: re.Match, group: int) -> tuple[int, int]:
    """Span of the identifying value: the given group, or for alternations (group 0) the first group that matched."""
    if group:
        return match.span(group)
    matched = [i for i in range(1, (match.re.groups or 0) + 1) if match.group(i) is not None]
    return match.span(matched[0]) if matched else match.span()


def _plausible(kind: str, value: str) -> bool:
    """Digit-count checks the patterns cannot express: phones have 10-15 digits."""
    if kind != "phone":
        return True
    num_digits = sum(c.isdigit() for c in value)
    return 10 <= num_digits <= 15
