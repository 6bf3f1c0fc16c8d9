"""Prompt -> FACS action-unit targets, with an offline sentence model and the FACS lexicon.

A prompt is split into clauses ("close eyes and frown" -> two); each clause loses its
intensity words ("slightly" x0.5, "wide" x1.3), is embedded, and matched to the nearest lexicon
phrase. Clauses combine by taking, per AU, the largest target. A prompt none of whose clauses
is close enough to a facial action raises PromptNotUnderstood with the closest expressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from faceedit_core.errors import InputError, PromptNotUnderstood
from faceedit_core.preview.lexicon import ENTRIES, INTENSITY_WORDS, LexiconEntry

MAX_PROMPT_CHARS = 300
CLAUSE_SPLIT = re.compile(r"\s*(?:,|;|\+|\band\b|\bwith\b|\bwhile\b|\bthen\b|\bplus\b)\s*")


@dataclass
class ClauseMatch:
    clause: str
    entry: str | None
    score: float
    scale: float


@dataclass
class AUTarget:
    """intensities {AU: target}, confidences {AU: cosine of the clause that set it}, matches."""

    intensities: dict[str, float]
    confidences: dict[str, float]
    matches: list[ClauseMatch] = field(default_factory=list)

    def key(self) -> str:
        """Canonical text for caching: 'AU12=1.00,AU6=1.00'."""
        return ",".join(f"{au}={v:.2f}" for au, v in sorted(self.intensities.items()))


def _intensity(clause: str) -> tuple[str, float]:
    scale = 1.0
    for word in sorted(INTENSITY_WORDS, key=len, reverse=True):
        pattern = rf"\b{re.escape(word)}\b"
        if re.search(pattern, clause):
            scale *= INTENSITY_WORDS[word]
            clause = re.sub(pattern, " ", clause)
    return re.sub(r"\s+", " ", clause).strip(), min(scale, 1.5)


class TextToAU:
    """parse(prompt) -> AUTarget. `embed` maps texts to unit vectors [N,D] (MiniLM by default)."""

    def __init__(
        self,
        threshold: float = 0.5,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        entries: tuple[LexiconEntry, ...] = ENTRIES,
    ):
        if embed is None:
            from faceedit_core.preview.text_encoder import embed as minilm

            embed = minilm
        self.embed, self.threshold, self.entries = embed, threshold, entries
        self._phrases = [(i, p) for i, e in enumerate(entries) for p in (e.name, *e.phrases)]
        self._phrase_vecs: np.ndarray | None = None

    def _entry_scores(self, texts: list[str]) -> np.ndarray:
        """[N, len(entries)]: best cosine of each text with each entry's phrases."""
        if self._phrase_vecs is None:
            self._phrase_vecs = self.embed([p for _, p in self._phrases])
        sims = self.embed(texts) @ self._phrase_vecs.T
        owner = np.array([i for i, _ in self._phrases])
        scores = np.full((len(texts), len(self.entries)), -1.0)
        for i in range(len(self.entries)):
            scores[:, i] = sims[:, owner == i].max(axis=1)
        return scores

    def suggestions(self, prompt: str, k: int = 3) -> list[str]:
        scores = self._entry_scores([prompt.lower()])[0]
        return [self.entries[i].name for i in np.argsort(-scores)[:k]]

    def parse(self, prompt: str) -> AUTarget:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("prompt must be a non-empty text")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InputError(f"prompt has {len(prompt)} characters, the limit is {MAX_PROMPT_CHARS}")
        text = re.sub(r"[^a-z0-9,;+' ]", " ", prompt.lower())
        raw = [re.sub(r"\s+", " ", c).strip() for c in CLAUSE_SPLIT.split(text) if c.strip()]
        if not raw:
            raise PromptNotUnderstood(f"prompt '{prompt}' names no facial action", self.suggestions(prompt))
        # an intensity word may also carry meaning ("wide eyes"): match the clause with and
        # without its intensity words and keep the better reading
        stripped = [_intensity(c) for c in raw]
        with_words = self._entry_scores(raw)
        without = self._entry_scores([c or r for (c, _), r in zip(stripped, raw)])
        clauses, scores = [], []
        for r, (c, scale), a, b in zip(raw, stripped, with_words, without):
            if c and b.max() > a.max():
                clauses.append((c, scale))
                scores.append(b)
            else:
                clauses.append((r, 1.0))
                scores.append(a)
        intensities: dict[str, float] = {}
        confidences: dict[str, float] = {}
        matches = []
        for (clause, scale), row in zip(clauses, scores):
            best = int(np.argmax(row))
            ok = row[best] >= self.threshold
            matches.append(ClauseMatch(clause, self.entries[best].name if ok else None, float(row[best]), scale))
            if not ok:
                continue
            for au, value in self.entries[best].aus.items():
                target = min(value * scale, 1.5)
                if target > intensities.get(au, 0.0):
                    intensities[au], confidences[au] = target, float(row[best])
        if not intensities:
            hints = self.suggestions(prompt)
            raise PromptNotUnderstood(
                f"prompt '{prompt}' does not describe a facial expression FaceEdit knows; closest: {', '.join(hints)}",
                hints,
            )
        return AUTarget(intensities, confidences, matches)
