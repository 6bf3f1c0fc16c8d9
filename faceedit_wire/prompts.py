"""The paper's six evaluation prompts (Smile, Angry, Sad, Close Eyes, Raise Brow, Frown Brow).

One list for the core (demo, evaluation, benchmarks: `faceedit_core.editor` re-exports it), the
server and the Blender add-on (its prompt default and presets menu, from the copy it ships).
"""

PAPER_PROMPTS = (
    "A person who is smiling",
    "A person who is angry",
    "A person who is sad",
    "A person who is closing eyes",
    "A person who is raising brow",
    "A person who is frowning",
)
