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
    angry = parser.parse("angry").intensities
    very = parser.parse("very angry").intensities
    assert slight == {au: 0.5 * v for au, v in full.items()}
    assert very == pytest.approx({au: 1.3 * v for au, v in angry.items()}) and very["AU4"] > 1.0


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


@pytest.mark.parametrize(
    "prompt, target",
    [
        ("wink with the left eye", {"AU43_L": 1.0}),
        ("wink with the right eye", {"AU43_R": 1.0}),
        ("a smirk on the right", {"AU12_R": 0.9, "AU14_R": 0.6}),
        ("raise one eyebrow", {"AU1_L": 1.0, "AU2_L": 1.0}),
        ("left brow up, right brow down", {"AU1_L": 1.0, "AU2_L": 1.0, "AU4_R": 1.0}),
        ("raise the left eyebrow", {"AU1_L": 1.0, "AU2_L": 1.0}),
        ("smile on the left side", {"AU6_L": 1.0, "AU12_L": 1.0}),
        ("wink", {"AU43_L": 1.0}),  # one-sided by nature: the subject's left without a side word
        ("look left", {"AU61": 1.0}),
        ("look right", {"AU62": 1.0}),
        ("open the mouth", {"AU25": 1.0, "AU26": 1.0}),
        ("yawn", {"AU25": 1.0, "AU26": 1.0, "AU27": 1.0}),
    ],
)
def test_sides_and_the_jaw(parser, prompt, target):
    assert parser.parse(prompt).intensities == pytest.approx(target)


def test_a_side_on_a_symmetric_entry_stays_on_lateral_actions_only(parser):
    # "surprised" has midline jaw actions: a side moves the brows and lids of that side, the jaw whole
    got = parser.parse("surprised on the right").intensities
    assert got["AU25"] == got["AU26"] == 1.0 and "AU1_R" in got and "AU1_L" not in got and "AU1" not in got


def test_symmetric_prompts_name_bilateral_actions(parser):
    for prompt in ("A person who is smiling", "slight smile", "close eyes and frown", "raise both eyebrows"):
        assert all("_" not in au for au in parser.parse(prompt).intensities), prompt
