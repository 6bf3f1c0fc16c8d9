"""Limits both sides of the wire enforce; the server refuses what exceeds them, naming the field.

The core's editor checks intensity and mapper count with the same values (faceedit_core.editor).
"""

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_BATCH = 16  # FLAME parameter items per request
MAX_VIEWS = 64  # cameras per render
MAX_SIZE = 1024  # render width/height in pixels
MAX_RENDER_PIXELS = 64 * 1024 * 1024  # items x views x size^2 of one render (64 views at 1024 px in all)
MAX_ID_CHARS = 128  # request id length
MAX_INTENSITY = 2.0  # |intensity| of an edit (edits are linear in it)
MAX_MAPPERS = 8  # mapper ids composed in one edit
