"""Prompt -> FACS action-unit targets, with an offline sentence model and the FACS lexicon.

A prompt is split into clauses ("close eyes and frown" -> two; "left brow up, right brow down" ->
two); each clause loses its side words ("left", "on the right", "one eyebrow": the side its
lateral actions apply to, the subject's own) and its intensity words ("slightly" x0.5, "wide"
x1.3), is embedded, and matched to the nearest lexicon phrase. Clauses combine by taking, per AU
channel (each side of a lateral action is one), the largest target. A prompt none of whose clauses
is close enough to a facial action raises PromptNotUnderstood with the closest expressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from faceedit_core.au.critic import LATERAL, compact_target, expand_target
from faceedit_core.errors import InputError, PromptNotUnderstood
from faceedit_core.preview.lexicon import DEFAULT_SIDE, ENTRIES, INTENSITY_WORDS, OTHER_DIRECTION, LexiconEntry

MAX_PROMPT_CHARS = 300
CLAUSE_SPLIT = re.compile(r"\s*(?:,|;|\+|\band\b|\bwith\b|\bwhile\b|\bthen\b|\bplus\b|\bbut\b)\s*")
# "with the left eye", "on the right", "on his left side" -> "left eye", "right", "left side" (not a new clause)
SIDE_PHRASE = re.compile(r"\b(?:with|on|using|in|at)\s+(?:the\s+|his\s+|her\s+|their\s+|its\s+|my\s+)?(left|right)\b")
BODY_PART = r"(?:eye|eyes|brow|brows|eyebrow|eyebrows|side|corner|corners|cheek|lid|eyelid)\b"
ONE_SIDE = re.compile(rf"\b(?:one|a single|single)\s+(?={BODY_PART})|\b(?:one-sided|one sided|unilateral)\b")
SIDE_WORDS = re.compile(r"\b(?:left|right|both)\b|\bside\b|\bsides\b")


def clause_side(clause: str) -> tuple[str, str | None]:
    """(clause without its side words, side): 'L', 'R', 'one', 'both' or None."""
    side = None
    if re.search(r"\bleft\b", clause):
        side = "L"
    elif re.search(r"\bright\b", clause):
        side = "R"
    elif ONE_SIDE.search(clause):
        side = "one"
    elif re.search(r"\bboth\b", clause):
        side = "both"
    text = SIDE_WORDS.sub(" ", ONE_SIDE.sub(" ", clause))
    return re.sub(r"\s+", " ", text).strip(), side


def split_clauses(text: str) -> list[str]:
    """Clauses of a normalised prompt; a clause naming both sides splits at the second one."""
    text = SIDE_PHRASE.sub(r" \1", text)
    out = []
    for c in CLAUSE_SPLIT.split(text):
        c = re.sub(r"\s+", " ", c).strip()
        hits = [m.start() for m in re.finditer(r"\b(?:left|right)\b", c)]
        if len(hits) > 1 and len(set(re.findall(r"\b(?:left|right)\b", c))) > 1:
            out += [c[: hits[1]].strip(), c[hits[1] :].strip()]
        elif c:
            out.append(c)
    return [c for c in out if c]


def sided_aus(entry: LexiconEntry, side: str | None) -> dict[str, float]:
    """The entry's AUs on `side` (see the lexicon's docstring): {AU or AU_side: value}."""
    if entry.sides == "direction":
        if side == "R":
            return {OTHER_DIRECTION.get(a, a): v for a, v in entry.aus.items()}
        return dict(entry.aus)
    if side in ("both",) or (side is None and entry.sides == "both"):
        return dict(entry.aus)
    s = DEFAULT_SIDE if side in (None, "one") else side
    return {(f"{a}_{s}" if a in LATERAL else a): v for a, v in entry.aus.items()}


@dataclass
class ClauseMatch:
    clause: str
    entry: str | None
    score: float
    scale: float
    side: str | None = None


@dataclass
class AUTarget:
    """intensities {AU or AU_side: target} (a lateral action on both sides at one value is named
    bilaterally: 'AU12'; otherwise per side: 'AU12_L'), confidences {same keys: cosine of the clause
    that set it}, matches."""

    intensities: dict[str, float]
    confidences: dict[str, float]
    matches: list[ClauseMatch] = field(default_factory=list)

    def key(self) -> str:
        """Canonical text for caching: 'AU12=1.00,AU6=1.00'."""
        return target_key(self.intensities)

    def channels(self) -> dict[str, float]:
        """{channel: value}, lateral actions per side (au.critic.CHANNELS names)."""
        return expand_target(self.intensities)

    @property
    def one_sided(self) -> bool:
        """True when some lateral action has different targets on its two sides."""
        return any("_" in k for k in self.intensities)


def target_key(target: dict[str, float]) -> str:
    """Canonical text of a target {AU or AU_side: value}, whatever way its sides are written."""
    canonical = compact_target(expand_target(target))
    return ",".join(f"{au}={v:.2f}" for au, v in sorted(canonical.items()))


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
        text = re.sub(r"[^a-z0-9,;+' -]", " ", prompt.lower())
        raw_clauses = split_clauses(text)
        if not raw_clauses:
            raise PromptNotUnderstood(f"prompt '{prompt}' names no facial action", self.suggestions(prompt))
        sides = [clause_side(c) for c in raw_clauses]
        raw = [c or r for (c, _), r in zip(sides, raw_clauses)]
        # an intensity word may also carry meaning ("wide eyes"): match the clause with and
        # without its intensity words and keep the better reading
        stripped = [_intensity(c) for c in raw]
        both = self._entry_scores(raw + [c or r for (c, _), r in zip(stripped, raw)])  # one call to the model
        with_words, without = both[: len(raw)], both[len(raw) :]
        clauses, scores = [], []
        for r, (c, scale), a, b in zip(raw, stripped, with_words, without):
            if c and b.max() > a.max():
                clauses.append((c, scale))
                scores.append(b)
            else:
                clauses.append((r, 1.0))
                scores.append(a)
        channels: dict[str, float] = {}
        confidence: dict[str, float] = {}
        matches = []
        for (clause, scale), row, (_, side) in zip(clauses, scores, sides):
            best = int(np.argmax(row))
            ok = row[best] >= self.threshold
            entry = self.entries[best]
            matches.append(ClauseMatch(clause, entry.name if ok else None, float(row[best]), scale, side))
            if not ok:
                continue
            for ch, value in expand_target(sided_aus(entry, side)).items():
                target = min(value * scale, 1.5)
                if target > channels.get(ch, 0.0):
                    channels[ch], confidence[ch] = target, float(row[best])
        intensities = compact_target(channels)
        confidences = {k: min(confidence[c] for c in expand_target({k: 1.0})) for k in intensities}
        if not intensities:
            hints = self.suggestions(prompt)
            raise PromptNotUnderstood(
                f"prompt '{prompt}' does not describe a facial expression FaceEdit knows; closest: {', '.join(hints)}",
                hints,
            )
        return AUTarget(intensities, confidences, matches)
