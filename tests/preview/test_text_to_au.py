"""Prompt -> AU targets with the offline MiniLM model and the FACS lexicon."""

import pytest

from faceedit_core.errors import InputError, PromptNotUnderstood
from faceedit_core.preview.lexicon import ENTRIES
from faceedit_core.preview.text_to_au import TextToAU


@pytest.fixture(scope="module")
def parser():
    return TextToAU()


@pytest.mark.parametrize(
    "prompt,aus",
    [
        ("A person who is smiling", {"AU6", "AU12"}),
        ("A person who is angry", {"AU4", "AU5", "AU7", "AU23"}),
        ("A person who is sad", {"AU1", "AU4", "AU15"}),
        ("A person who is closing eyes", {"AU43"}),
        ("A person who is raising brow", {"AU1", "AU2"}),
        ("A person who is frowning", {"AU4"}),
        ("happy", {"AU6", "AU12"}),
        ("eyes wide open", {"AU5"}),
        ("pucker the lips", {"AU18"}),
    ],
)
def test_paper_prompts_and_synonyms(parser, prompt, aus):
    assert set(parser.parse(prompt).intensities) == aus


def test_intensity_words_scale(parser):
    full = parser.parse("smile").intensities
    slight = parser.parse("slight smile").intensities
    very = parser.parse("very angry").intensities
    assert slight == {au: 0.5 * v for au, v in full.items()}
    assert all(v > 1.0 for v in very.values())


def test_several_actions_combine(parser):
    target = parser.parse("close eyes and frown")
    assert set(target.intensities) == {"AU43", "AU4"}
    assert [m.entry for m in target.matches] == ["close eyes", "frown brow"]


def test_unrelated_prompt_gets_suggestions(parser):
    with pytest.raises(PromptNotUnderstood) as info:
        parser.parse("the quarterly tax report")
    assert len(info.value.suggestions) == 3
    assert "closest" in str(info.value)


def test_lexicon_covers_the_required_action_units():
    covered = {au for e in ENTRIES for au in e.aus}
    assert {
        "AU1",
        "AU2",
        "AU4",
        "AU5",
        "AU6",
        "AU7",
        "AU9",
        "AU12",
        "AU15",
        "AU20",
        "AU23",
        "AU24",
        "AU25",
        "AU26",
        "AU43",
    } <= covered


def test_bad_prompts(parser):
    with pytest.raises(InputError, match="non-empty"):
        parser.parse("   ")
    with pytest.raises(InputError, match="limit is 300"):
        parser.parse("smile " * 100)
