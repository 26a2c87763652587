"""Cleaning algorithms for the data stage: normalization, exact/near dedup, decontamination, PHI/PII screen.

Pure library code (no I/O, no config): the data stage (assemble.py) decides what to do with each result.
"""

from med42_train.data.clean.decontaminate import Contamination, Decontaminator
from med42_train.data.clean.dedup import ExactDedup, NearDedup
from med42_train.data.clean.normalize import normalize_text, words
from med42_train.data.clean.phi import PhiHit, PhiScanner

__all__ = ["Contamination", "Decontaminator", "ExactDedup", "NearDedup", "PhiHit", "PhiScanner", "normalize_text",
           "words"]
