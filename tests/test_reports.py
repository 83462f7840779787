from __future__ import annotations

import pytest

from unimedi_monai.data.reports import clean_report, extract_sections, report_from_sections, truncate_report

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation , pleural effusion or pneumothorax.  Heart size: normal.
 Compared to ___, ___ the cardiomediastinal silhouette is stable (___).

 IMPRESSION:

 No acute cardiopulmonary process.

 NOTIFICATION:  Dr. [** Name **] was told by phone.
"""


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("  No   acute\n\nprocess .  ", "No acute process."),
        ("Compared to ___, ___ the heart is stable.", "Compared to, the heart is stable."),
        ("Seen on ___. ___. Stable.", "Seen on. Stable."),
        ("Dr. [** First Name **] [**Last Name**] was paged , .", "Dr. was paged."),
        ("Effusion ( ___ ) persists", "Effusion persists"),
        ("___. Lungs clear", "Lungs clear"),
        ("\uff26indings\u3000\uff1a ok", "Findings: ok"),  # full-width letters/colon/space -> NFKC
        ("Mild CARDIOMEGALY; stable", "Mild CARDIOMEGALY; stable"),  # case kept
        ("1.5 cm nodule, stable, 10:30 am", "1.5 cm nodule, stable, 10:30 am"),  # numbers untouched
        ("___ __", ""),
        ("", ""),
    ],
)
def test_clean_report_examples(raw, expected):
    assert clean_report(raw) == expected


def test_clean_report_none_and_type():
    assert clean_report(None) == ""
    with pytest.raises(TypeError, match="expects a str"):
        clean_report(3)  # type: ignore[arg-type]


def test_extract_sections_mimic_report():
    sections = extract_sections(MIMIC_REPORT)
    assert list(sections) == ["FINDINGS", "IMPRESSION"]
    # a mixed-case "Heart size:" line start does not end the section; the ALLCAPS "IMPRESSION:" does
    assert sections["FINDINGS"] == (
        "There is no focal consolidation, pleural effusion or pneumothorax. Heart size: normal. "
        "Compared to, the cardiomediastinal silhouette is stable."
    )
    # IMPRESSION stops at the next ALLCAPS heading (NOTIFICATION)
    assert sections["IMPRESSION"] == "No acute cardiopulmonary process."


def test_extract_sections_case_insensitive_same_line_and_custom():
    text = "Findings: Small left effusion.\nimpression: Effusion.\nRECOMMENDATION(S): follow up"
    assert extract_sections(text) == {"FINDINGS": "Small left effusion.", "IMPRESSION": "Effusion."}
    assert extract_sections(MIMIC_REPORT, ("COMPARISON",)) == {"COMPARISON": "None."}
    assert extract_sections(text, ("Impression",)) == {"Impression": "Effusion."}


def test_extract_sections_missing_and_empty():
    assert extract_sections("Heart normal. Lungs clear.") == {}
    assert extract_sections("") == {}
    assert extract_sections(None) == {}
    # an empty FINDINGS section is not returned
    assert extract_sections("FINDINGS:\n  ___\nIMPRESSION: Normal.") == {"IMPRESSION": "Normal."}


def test_report_from_sections():
    assert report_from_sections(MIMIC_REPORT) == (
        "FINDINGS: There is no focal consolidation, pleural effusion or pneumothorax. Heart size: normal. "
        "Compared to, the cardiomediastinal silhouette is stable. IMPRESSION: No acute cardiopulmonary process."
    )
    assert report_from_sections("EXAM: CXR\nIMPRESSION:\n Normal chest.") == "IMPRESSION: Normal chest."
    # no heading: the whole cleaned text is kept rather than dropped
    assert report_from_sections(" WET READ: ___ no pneumonia .\n") == "WET READ: no pneumonia."
    assert report_from_sections("   \n ") == ""
    assert report_from_sections("___") == ""


@pytest.fixture(scope="module")
def tokenizer():
    """The default report encoder's tokenizer, found through the installed package as the encoder finds it.

    The MiniLM-L6 package is part of the locked environment, so this never skips: a missing package fails.
    """
    import transformers

    from unimedi_monai.networks.text_encoder import default_text_model_path

    return transformers.AutoTokenizer.from_pretrained(str(default_text_model_path()), local_files_only=True)


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True)["input_ids"])


def test_truncate_report_fits_unchanged(tokenizer):
    text = "No acute cardiopulmonary process."
    assert truncate_report(text, tokenizer, 64) is text
    n = _count(tokenizer, text)
    assert truncate_report(text, tokenizer, n) == text


def test_truncate_report_cuts_at_word_boundary(tokenizer):
    words = [f"opacity{i}" if i % 3 else "pneumothorax," for i in range(200)]
    text = " ".join(words)
    for max_length in (10, 16, 33, 100):
        out = truncate_report(text, tokenizer, max_length)
        assert out, max_length
        assert _count(tokenizer, out) <= max_length
        assert text.startswith(out)
        # cut at a word boundary: the next character of the original is a space
        assert text[len(out)] == " "
        # and it is the longest such prefix: one more word does not fit
        next_end = text.find(" ", len(out) + 1)
        assert _count(tokenizer, text[:next_end]) > max_length


def test_truncate_report_errors_and_long_word(tokenizer):
    with pytest.raises(ValueError, match="no room"):
        truncate_report("a b c", tokenizer, 2)  # [CLS] + [SEP] already use 2 tokens
    with pytest.raises(ValueError, match="positive int"):
        truncate_report("a b c", tokenizer, 0)
    # a first word longer than the budget is cut inside the word
    word = "pneumo" * 12
    assert _count(tokenizer, word) > 6
    out = truncate_report(word + " clear", tokenizer, 6)
    assert out and word.startswith(out) and len(out) < len(word)
    assert _count(tokenizer, out) <= 6
