"""A FACS lexicon written for FaceEdit: action units in plain words, and expression prototypes.

Each entry maps a phrase (and its synonyms) to target AU intensities on the critic's scale
(1.0 = a clear, full action). Emotion prototypes follow EMFACS; the paper's six prompts use the
AU sets of its evaluation (Smile AU6+12, Angry AU4+5+7+23, Sad AU1+4+15, Close Eyes AU43,
Raise Brow AU1+2, Frown Brow AU4). Angry asks AU5 at half strength: the glare of an upper lid
raised under lowered brows; at full strength the wide-open eyes dominated the renders and the face
read as startled (docs/evaluation.md).

Sides: AU names are bilateral here ("AU12" = both corners). A clause that names a side ("the left
eye", "on the right", "one eyebrow") applies the entry's lateral actions to that side only
(`AU12_L`, the subject's left, +x in FLAME axes); midline actions stay as they are. Entries that
FACS defines as one-sided (a wink, a smirk, contempt) have `sides="one"` and, without a side word,
act on the subject's left (DEFAULT_SIDE). Gaze entries (`sides="direction"`) read "left"/"right"
as the direction the eyes turn.
"""

from __future__ import annotations

from dataclasses import dataclass

AU_NAMES: dict[str, str] = {
    "AU1": "inner brow raiser",
    "AU2": "outer brow raiser",
    "AU4": "brow lowerer",
    "AU5": "upper lid raiser",
    "AU6": "cheek raiser",
    "AU7": "lid tightener",
    "AU9": "nose wrinkler",
    "AU12": "lip corner puller",
    "AU15": "lip corner depressor",
    "AU17": "chin raiser",
    "AU18": "lip pucker",
    "AU20": "lip stretcher",
    "AU23": "lip tightener",
    "AU24": "lip pressor",
    "AU25": "lips part",
    "AU26": "jaw drop",
    "AU14": "dimpler",
    "AU27": "mouth stretch",
    "AU43": "eyes closed",
    "AU61": "eyes turn left",
    "AU62": "eyes turn right",
    "AU63": "eyes up",
    "AU64": "eyes down",
}
DEFAULT_SIDE = "L"  # one-sided actions without a side word: the subject's left
# direction entries: the action for the other side ("look right" = AU62)
OTHER_DIRECTION = {"AU61": "AU62", "AU62": "AU61"}


@dataclass(frozen=True)
class LexiconEntry:
    name: str  # short name shown to users
    aus: dict  # AU -> target intensity
    phrases: tuple[str, ...]  # how people say it; the first is the canonical description
    kind: str = "action"  # "action" (one AU) or "expression" (a prototype)
    sides: str = "both"  # "both" (bilateral unless a side is named), "one" (FACS one-sided), "direction" (gaze)


ENTRIES: tuple[LexiconEntry, ...] = (
    # single actions
    LexiconEntry(
        "inner brow raise",
        {"AU1": 1.0},
        ("raise the inner brows", "inner brows up", "worried brows", "brows pulled up in the middle"),
    ),
    LexiconEntry("outer brow raise", {"AU2": 1.0}, ("raise the outer brows", "outer brows up", "arch the eyebrows")),
    LexiconEntry(
        "brow lower",
        {"AU4": 1.0},
        (
            "lower the brows",
            "knit the brows",
            "furrow the brow",
            "brows drawn together",
            "scowl",
            "brow down",
            "lower the eyebrow",
            "eyebrow down",
        ),
    ),
    LexiconEntry(
        "upper lid raise",
        {"AU5": 1.0},
        ("widen the eyes", "eyes wide open", "raise the upper eyelids", "stare with wide eyes"),
    ),
    LexiconEntry("cheek raise", {"AU6": 1.0}, ("raise the cheeks", "cheeks up", "squint with the cheeks")),
    LexiconEntry("lid tighten", {"AU7": 1.0}, ("tighten the eyelids", "narrow the eyes", "squint")),
    LexiconEntry("nose wrinkle", {"AU9": 1.0, "AU4": 0.4}, ("wrinkle the nose", "scrunch the nose", "sneer")),
    LexiconEntry(
        "lip corner pull",
        {"AU12": 1.0},
        ("pull the lip corners up", "corners of the mouth up", "grin", "lip corner up", "mouth corner up"),
    ),
    LexiconEntry("dimpler", {"AU14": 1.0}, ("dimple the cheeks", "dimples", "tuck the lip corners in")),
    LexiconEntry(
        "lip corner depress",
        {"AU15": 1.0},
        (
            "pull the lip corners down",
            "corners of the mouth down",
            "turn the mouth down",
            "pout",
            "lip corner down",
            "mouth corner down",
        ),
    ),
    LexiconEntry("chin raise", {"AU17": 1.0}, ("raise the chin", "push the lower lip up", "chin boss up")),
    LexiconEntry("lip pucker", {"AU18": 1.0}, ("pucker the lips", "purse the lips", "kiss", "pout the lips forward")),
    LexiconEntry("lip stretch", {"AU20": 1.0}, ("stretch the lips", "stretch the mouth sideways", "grimace")),
    LexiconEntry("lip tighten", {"AU23": 1.0}, ("tighten the lips", "thin the lips", "narrow the lips")),
    LexiconEntry("lip press", {"AU24": 1.0}, ("press the lips together", "lips pressed", "clamp the lips")),
    LexiconEntry("lips part", {"AU25": 1.0}, ("part the lips", "lips apart", "slightly open lips")),
    LexiconEntry("jaw drop", {"AU26": 1.0, "AU25": 1.0}, ("open the mouth", "drop the jaw", "mouth open", "gape")),
    LexiconEntry(
        "mouth stretch",
        {"AU27": 1.0, "AU26": 1.0, "AU25": 1.0},
        ("yawn", "yawning", "open the mouth wide", "mouth wide open", "jaw wide open", "scream"),
    ),
    LexiconEntry("eyes closed", {"AU43": 1.0}, ("close the eyes", "eyes closed", "shut the eyes", "blink", "sleeping")),
    LexiconEntry("wink", {"AU43": 1.0}, ("wink", "winking", "close one eye", "wink an eye"), sides="one"),
    LexiconEntry(
        "look left",
        {"AU61": 1.0},
        ("look to the side", "look sideways", "eyes to the side", "glance sideways", "look"),
        sides="direction",
    ),
    LexiconEntry("look up", {"AU63": 1.0}, ("look up", "eyes up", "gaze upwards", "roll the eyes up")),
    LexiconEntry("look down", {"AU64": 1.0}, ("look down", "eyes down", "gaze downwards", "glance down")),
    # the paper's six prompts
    LexiconEntry(
        "smile",
        {"AU6": 1.0, "AU12": 1.0},
        ("a person who is smiling", "smile", "smiling", "happy", "joyful", "laughing", "cheerful"),
        "expression",
    ),
    LexiconEntry(
        "angry",
        {"AU4": 1.0, "AU5": 0.5, "AU7": 1.0, "AU23": 1.0},
        ("a person who is angry", "angry", "furious", "mad", "rage", "annoyed"),
        "expression",
    ),
    LexiconEntry(
        "sad",
        {"AU1": 1.0, "AU4": 1.0, "AU15": 1.0},
        ("a person who is sad", "sad", "unhappy", "sorrowful", "crying", "gloomy", "depressed"),
        "expression",
    ),
    LexiconEntry("close eyes", {"AU43": 1.0}, ("a person who is closing eyes", "close eyes"), "expression"),
    LexiconEntry(
        "raise brow",
        {"AU1": 1.0, "AU2": 1.0},
        (
            "a person who is raising brow",
            "raise brows",
            "raised eyebrows",
            "eyebrows up",
            "raise the eyebrows",
            "brow up",
            "raise the eyebrow",
            "eyebrow up",
        ),
        "expression",
    ),
    LexiconEntry(
        "frown brow",
        {"AU4": 1.0},
        ("a person who is frowning", "frown", "frowning", "frown brow", "frowning brows"),
        "expression",
    ),
    # other EMFACS prototypes
    LexiconEntry(
        "surprise",
        {"AU1": 1.0, "AU2": 1.0, "AU5": 1.0, "AU26": 1.0, "AU25": 1.0},
        ("a person who is surprised", "surprised", "astonished", "amazed", "shocked"),
        "expression",
    ),
    LexiconEntry(
        "fear",
        {"AU1": 1.0, "AU2": 1.0, "AU4": 0.6, "AU5": 1.0, "AU20": 1.0, "AU25": 1.0},
        ("a person who is afraid", "afraid", "scared", "frightened", "terrified", "fearful"),
        "expression",
    ),
    LexiconEntry(
        "disgust",
        {"AU9": 1.0, "AU15": 1.0, "AU4": 0.5},
        ("a person who is disgusted", "disgusted", "repulsed", "grossed out"),
        "expression",
    ),
    LexiconEntry(
        "contempt",
        {"AU14": 1.0, "AU12": 0.5},
        ("a person who is contemptuous", "contempt", "scornful", "disdain"),
        "expression",
        sides="one",
    ),
    LexiconEntry(
        "smirk",
        {"AU12": 0.9, "AU14": 0.6},
        ("a smirk", "smirk", "smirking", "half smile", "lopsided smile", "crooked smile"),
        "expression",
        sides="one",
    ),
)

# Intensity words scale every AU of the clause they appear in.
INTENSITY_WORDS: dict[str, float] = {
    "slightly": 0.5,
    "slight": 0.5,
    "a little": 0.5,
    "a bit": 0.5,
    "subtle": 0.5,
    "subtly": 0.5,
    "faint": 0.4,
    "gently": 0.6,
    "gentle": 0.6,
    "half": 0.5,
    "mildly": 0.6,
    "mild": 0.6,
    "soft": 0.6,
    "very": 1.3,
    "wide": 1.3,
    "widely": 1.3,
    "broad": 1.3,
    "broadly": 1.3,
    "big": 1.3,
    "strongly": 1.4,
    "strong": 1.4,
    "extremely": 1.5,
    "fully": 1.2,
    "tightly": 1.2,
    "hard": 1.3,
}
