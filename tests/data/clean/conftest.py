"""Clean real training texts from ../shared/realdata, shared by the cleaning tests."""

from __future__ import annotations

import pytest

from tests.data.clean.realtexts import read_alpaca_texts


@pytest.fixture(scope="session")
def clean_texts(realdata) -> list[str]:
    """4000 real training texts: medalpaca wikidoc (2000) and ChatDoctor GenMedGPT (2000, CRLF kept)."""
    return (read_alpaca_texts(realdata / "medalpaca_wikidoc_patient_information_2000.json")
            + read_alpaca_texts(realdata / "chatdoctor_genmedgpt5k_2000.json"))
