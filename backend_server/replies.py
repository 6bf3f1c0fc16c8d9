"""What a client is told when a request fails: an error reply for any exception, without server paths.

Protocol and input errors keep their message (it names the field and the limit); anything else
is `internal` with the exception's class and message. Every message has absolute paths cut to
their last part (`/home/me/.cache/faceedit/x.json` -> `.../x.json`): clients never learn where
the server keeps its files. The full detail goes to the server's log.
"""

from __future__ import annotations

import logging
import re

from faceedit_wire import protocol as P

log = logging.getLogger("faceedit.server")

# an absolute POSIX, home-relative or Windows path: not preceded by a word character, ':' or '/'
# (so 'AU1/AU2', 'docs/server.md' and URLs stay as they are)
_PATH = re.compile(r"(?<![\w:/\\.~-])(?:~|[A-Za-z]:)?(?:[/\\][^\s/\\'\"`<>|:;,()\[\]{}]+)+[/\\]?")
MAX_MESSAGE_CHARS = 2000


def scrub_paths(text: str) -> str:
    """text with every absolute path replaced by '.../<its last part>'."""
    return _PATH.sub(lambda m: ".../" + re.split(r"[/\\]", m.group(0).rstrip("/\\"))[-1], text)


def error(req_id: str | None, code: str, message: str) -> dict:
    """An error reply whose message is safe to send: paths scrubbed, length capped."""
    text = scrub_paths(message)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return P.error(req_id, code, text)


def error_reply(req_id: str | None, exc: BaseException) -> dict:
    """The error reply for an exception raised while serving request req_id (logged when unexpected)."""
    from faceedit_core.errors import Cancelled, InputError, MissingModelError, PromptNotUnderstood

    if isinstance(exc, P.ProtocolError):
        return error(req_id, exc.code, str(exc))
    if isinstance(exc, PromptNotUnderstood):
        return error(req_id, P.PROMPT_NOT_UNDERSTOOD, str(exc)) | {"suggestions": [str(s) for s in exc.suggestions]}
    if isinstance(exc, Cancelled):
        return error(req_id, P.CANCELLED, str(exc))
    if isinstance(exc, MissingModelError):
        log.error("request %s needs a model file: %s", req_id, exc)
        return error(req_id, P.NOT_FOUND, str(exc))
    if isinstance(exc, InputError):
        return error(req_id, P.INVALID_FIELD, str(exc))
    log.error("internal error in request %s", req_id, exc_info=exc)
    return error(req_id, P.INTERNAL, f"internal error: {exc.__class__.__name__}: {exc} (details in the server log)")
