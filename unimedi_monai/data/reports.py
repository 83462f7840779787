# SPDX-License-Identifier: Apache-2.0
"""Radiology report text: cleaning, section extraction and token-budget truncation.

The functions here turn raw report text (for example a MIMIC-CXR ``sXXXXXXXX.txt`` file) into the
single-line text fed to the text encoder:

- :func:`clean_report` normalises unicode and whitespace and removes de-identification placeholders;
- :func:`extract_sections` / :func:`report_from_sections` keep the ``FINDINGS`` and ``IMPRESSION``
  sections of reports written with ``HEADING:`` lines;
- :func:`truncate_report` shortens a report to what fits in a tokenizer's length budget, at a word
  boundary.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

__all__ = ["clean_report", "extract_sections", "report_from_sections", "truncate_report"]

# MIMIC-style "[** ... **]" placeholders and "___" runs.
_BRACKET_PLACEHOLDER = re.compile(r"\[\*\*.*?\*\*\]", re.DOTALL)
_UNDERSCORE_PLACEHOLDER = re.compile(r"_{2,}")
_WHITESPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)\]])")
_SPACE_AFTER_OPEN = re.compile(r"([(\[])\s+")
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]")
_PUNCT_RUN = re.compile(r"[,.;:!?](?:\s*[,.;:!?])+")
_LEADING_PUNCT = re.compile(r"^[\s,.;:!?]+")
# A candidate heading: a word-like label at the start of a line, followed by a colon.
_HEADING = re.compile(r"^[ \t]*([A-Za-z][A-Za-z0-9 /&()'-]*?)[ \t]*:", re.MULTILINE)

_SENTENCE_END = ".!?"
_CLAUSE_END = ";:"


def _collapse_punct_run(match: re.Match) -> str:
    """Replace a run such as ", ." or ". ," by its strongest mark (sentence end > ; or : > ,)."""
    marks = [c for c in match.group(0) if not c.isspace()]
    for group in (_SENTENCE_END, _CLAUSE_END):
        for mark in marks:
            if mark in group:
                return mark
    return marks[0]


def clean_report(text: str | None) -> str:
    """Normalise a report into one line of text.

    Steps: unicode NFKC normalisation; removal of de-identification placeholders (runs of two or
    more underscores such as ``___`` and MIMIC's ``[** ... **]``); whitespace and newlines collapsed
    to single spaces; spaces before punctuation removed; empty brackets and punctuation runs left by
    removed placeholders (``", ,"``, ``". ."``) collapsed to one mark; leading punctuation removed.
    Case is kept.

    Args:
        text: the raw report; ``None`` is treated as empty.

    Returns:
        The cleaned text (``""`` when nothing is left).

    Raises:
        TypeError: when ``text`` is neither a string nor ``None``.
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        raise TypeError(f"clean_report expects a str, got {type(text).__name__}.")
    text = unicodedata.normalize("NFKC", text)
    text = _BRACKET_PLACEHOLDER.sub(" ", text)
    text = _UNDERSCORE_PLACEHOLDER.sub(" ", text)
    text = _WHITESPACE.sub(" ", text)
    text = _SPACE_AFTER_OPEN.sub(r"\1", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _EMPTY_BRACKETS.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _PUNCT_RUN.sub(_collapse_punct_run, text)
    text = _LEADING_PUNCT.sub("", text)
    text = _WHITESPACE.sub(" ", text)
    return text.strip()


def _is_boundary_heading(label: str) -> bool:
    """An all-capitals label (e.g. ``COMPARISON``) ends the previous section."""
    letters = [c for c in label if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def extract_sections(text: str | None, sections: Sequence[str] = ("FINDINGS", "IMPRESSION")) -> dict[str, str]:
    """Extract named sections from a report written with ``HEADING:`` lines (MIMIC-CXR style).

    A requested heading is matched case-insensitively at the start of a line (leading spaces
    allowed), followed by a colon; its text may start on the same line. A section runs to the
    next line that starts with an all-capitals heading followed by a colon (``IMPRESSION:``,
    ``NOTIFICATION:``, ...) or to the end of the text. When a heading occurs several times, the
    texts are joined.

    Args:
        text: the raw report.
        sections: the headings to extract.

    Returns:
        Maps each requested heading (spelled as in ``sections``) that was found with non-empty
        text to its cleaned text (see :func:`clean_report`), in the order of ``sections``.
    """
    if not text:
        return {}
    if isinstance(sections, str):
        sections = (sections,)
    wanted = {name.strip().upper(): name for name in sections}
    headings = []
    for match in _HEADING.finditer(text):
        label = _WHITESPACE.sub(" ", match.group(1)).strip()
        requested = wanted.get(label.upper())
        if requested is not None or _is_boundary_heading(label):
            headings.append((match.start(), match.end(), requested))

    found: dict[str, list[str]] = {}
    for i, (_, body_start, requested) in enumerate(headings):
        if requested is None:
            continue
        body_end = headings[i + 1][0] if i + 1 < len(headings) else len(text)
        body = clean_report(text[body_start:body_end])
        if body:
            found.setdefault(requested, []).append(body)
    return {name: " ".join(found[name]) for name in sections if name in found}


def report_from_sections(text: str | None, sections: Sequence[str] = ("FINDINGS", "IMPRESSION")) -> str:
    """Build the training text from a report's sections.

    Args:
        text: the raw report.
        sections: the headings to keep, in output order.

    Returns:
        ``"FINDINGS: ... IMPRESSION: ..."`` with the sections that are present; the whole cleaned
        report when none is present (so no report is silently dropped); ``""`` for an empty report.
    """
    found = extract_sections(text, sections)
    if found:
        return " ".join(f"{name.upper()}: {body}" for name, body in found.items())
    return clean_report(text)


def _num_tokens(tokenizer: Any, text: str) -> int:
    encoded = tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)
    return len(encoded["input_ids"])


def _largest_fitting(cuts: Sequence[int], text: str, tokenizer: Any, max_length: int) -> int | None:
    """Index of the longest prefix ``text[:cuts[i]]`` that fits, by bisection (``cuts`` ascending)."""
    lo, hi, best = 0, len(cuts) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if _num_tokens(tokenizer, text[: cuts[mid]]) <= max_length:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    # token counts are not strictly monotonic in the prefix length: step back until it fits
    while best is not None and _num_tokens(tokenizer, text[: cuts[best]]) > max_length:
        best = best - 1 if best > 0 else None
    return best


def truncate_report(text: str, tokenizer: Any, max_length: int) -> str:
    """Truncate a report to what fits in ``max_length`` tokens, cutting at a word boundary.

    Args:
        text: the report text.
        tokenizer: a Hugging Face tokenizer (called as ``tokenizer(text, add_special_tokens=True)``).
        max_length: the token budget, special tokens (e.g. ``[CLS]`` and ``[SEP]``) included.

    Returns:
        ``text`` unchanged when it fits; otherwise its longest prefix that ends at a word boundary
        and fits (trailing spaces removed). When not even the first word fits, the first word is
        cut at the longest fitting character prefix.

    Raises:
        ValueError: when ``max_length`` cannot hold the tokenizer's special tokens plus one token.
    """
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive int, got {max_length!r}.")
    if _num_tokens(tokenizer, text) <= max_length:
        return text
    if _num_tokens(tokenizer, "") >= max_length:
        raise ValueError(
            f"max_length={max_length} leaves no room for text after the tokenizer's special tokens; increase it."
        )
    word_ends = [m.end() for m in re.finditer(r"\S+", text)]
    best = _largest_fitting(word_ends, text, tokenizer, max_length)
    if best is not None:
        return text[: word_ends[best]].rstrip()
    start = len(text) - len(text.lstrip())
    char_cuts = list(range(start + 1, word_ends[0] + 1)) if word_ends else []
    best = _largest_fitting(char_cuts, text, tokenizer, max_length)
    return "" if best is None else text[: char_cuts[best]].strip()
