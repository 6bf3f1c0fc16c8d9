"""The add-on's runtime: one Jobs runner, what the server said in `hello`, the poll timer, reports.

- Reports: every request ends in one report, sent to Blender's Info area (and the status bar's
  report line) through the internal `faceedit.report` operator, whatever finished it (a timer,
  a file load, Esc); `JOBS.log` keeps them.
- Progress: the status bar shows a bar with the running request and its Cancel button (the
  sidebar may be closed), the cursor shows `window_manager.progress_*`, Esc cancels (a keymap
  item whose poll() only passes while a request runs, so Esc stays free otherwise).
- The poll timer is persistent (it survives File > New/Open); a file load cancels a request
  that would write into the scene it came from (`load_pre`) and puts the timer back (`load_post`).
"""

from __future__ import annotations

import atexit
import time
from pathlib import Path

import bpy
from bpy.app.handlers import persistent

from . import prefs
from .jobs import Jobs, Settings
from .wire.client import CurveKeys, ServerError
from .wire.net import is_loopback
from .wire.protocol import PROTOCOL_VERSION

POLL_INTERVAL_S = 0.02  # while a request is in flight; the timer stops when idle
SHOW_OUTCOME_S = 20.0  # how long the status bar shows the last outcome
server: dict = {}  # last hello: tier, models, expressions, head_verts, head_hash, n_shape, n_exp, address
_progress_on: list = []  # the window manager whose progress cursor is on


def settings() -> Settings:
    p = prefs.preferences()
    if p is None:
        return Settings()
    curve = None
    if p.curve_client_secret or p.curve_server_public:
        secret, public = Path(bpy.path.abspath(p.curve_client_secret)), Path(bpy.path.abspath(p.curve_server_public))
        for path, what in ((secret, "client key pair"), (public, "server public key")):
            if not path.is_file():
                raise ServerError(
                    "invalid_settings", f"the CURVE {what} file '{path}' does not exist (add-on preferences)"
                )
        curve = CurveKeys(secret, public)
    if not is_loopback(p.address) and not bpy.app.online_access:
        raise ServerError(
            "offline",
            f"'{p.address}' is not on this machine and Blender's Online Access is off "
            f"(Preferences > System > Network); loopback servers work offline",
        )
    if not is_loopback(p.address) and curve is None:
        raise ServerError(
            "invalid_settings", f"'{p.address}' is not loopback: set the CURVE key files in the preferences"
        )
    return Settings(p.address, p.timeout_s, p.retries, curve)


def report(level: str, text: str) -> None:
    """Put an outcome into Blender's Info area and the status bar (from any context: the timer, a
    file load, Esc), through the modal faceedit.report (see there why modal)."""
    if _loading:  # a file is being loaded: its windows' handlers are about to be freed; report after
        _deferred.append((level, text))
        return
    wm = getattr(bpy.context, "window_manager", None)
    window = bpy.context.window or (wm.windows[0] if wm is not None and len(wm.windows) else None)
    if bpy.app.background or window is None:
        return  # Jobs has printed it; no Info area to show it in
    try:
        with bpy.context.temp_override(window=window, screen=window.screen):
            bpy.ops.faceedit.report("INVOKE_DEFAULT", level=level, message=text[:1000])
    except (RuntimeError, AttributeError, TypeError):  # no operator while unregistering; a closing window
        pass
    redraw()


JOBS = Jobs(settings, report)


def _abandon_at_exit() -> None:
    """Blender quits with a request in flight: cancel it on the server (no report: the UI is gone)."""
    job, client = JOBS.job, JOBS._client
    if job is not None and client is not None and client.sock is not None:
        client.abandon(job.pending)
        client.sock.close(linger=500)  # give the cancel half a second to leave
        client.sock = None


atexit.register(_abandon_at_exit)


def remember_hello(result: dict) -> dict:
    """Keep what the panel and the operators need from a hello reply."""
    if result.get("protocol") != PROTOCOL_VERSION:
        raise ServerError(
            "version", f"the server speaks protocol {result.get('protocol')}, this add-on {PROTOCOL_VERSION}"
        )
    head = result.get("head") or {}
    verts = head.get("vertices")
    server.clear()
    server.update(
        tier=result.get("tier", "?"),
        models=result.get("models") or {},
        expressions=list(result.get("expressions") or []),
        head_hash=head.get("head_hash"),
        head_verts=int(verts.shape[0]) if verts is not None else None,
        n_shape=head.get("n_shape"),
        n_exp=head.get("n_exp"),
        address=JOBS.client().address,
        basis={},  # expression component -> [V,3] displacement, asked for when a FLAME rig is checked
    )
    if verts is not None:
        server["template"] = verts
    return server


def with_server(label: str, then, touches_scene: bool = True) -> None:
    """Run then() once the server's hello is known (sending hello first when it is not)."""
    if server.get("address") == settings().address:
        then()
        return

    def on_hello(result):
        remember_hello(result)
        then()
        return f"connected: {server['tier']} tier"

    JOBS.submit("hello", {"head_mesh": True}, label, on_hello, touches_scene=touches_scene)


STEP_HOOKS: list = []  # functions the poll timer calls first; True keeps the timer going (backend.step)


def redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "STATUSBAR", "PREFERENCES", "INFO"):
                area.tag_redraw()


def _progress_cursor(busy: bool) -> None:
    """window_manager.progress_begin/update/end: the cursor's progress while a request runs."""
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    try:
        if busy:
            if not _progress_on:
                wm.progress_begin(0, 1000)
                _progress_on.append(wm)
            wm.progress_update(int(JOBS.status.factor * 1000))
        elif _progress_on:
            _progress_on.clear()
            wm.progress_end()
    except (RuntimeError, ReferenceError):
        _progress_on.clear()


def undo_push(label: str) -> None:
    """A reply changed the scene: make it one undo step (the request operators have no UNDO flag, since
    the reply arrives after they returned)."""
    try:
        bpy.ops.ed.undo_push(message=f"FaceEdit: {label}")
    except RuntimeError:  # no window to keep undo steps in (background mode)
        pass


def timer_step() -> float | None:
    """The timer's body: poll, make a finished edit one undo step, redraw -> the next interval or None."""
    starting = any([hook() for hook in STEP_HOOKS])
    job, succeeded = JOBS.job, JOBS.succeeded
    busy = JOBS.poll_step()
    if job is not None and JOBS.succeeded > succeeded and job.touches_scene:
        undo_push(job.label)
    _progress_cursor(busy)
    redraw()
    if busy:
        return POLL_INTERVAL_S
    if starting:
        return 0.2
    if JOBS.status.ended and time.monotonic() - JOBS.status.ended < SHOW_OUTCOME_S:
        return 1.0  # keep redrawing the status bar until the outcome has been shown long enough
    return None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(timer_step):
        bpy.app.timers.register(timer_step, first_interval=POLL_INTERVAL_S, persistent=True)


_loading = False
_deferred: list = []  # reports made while a file loads, shown once it has loaded


@persistent
def on_load_pre(*_args) -> None:
    """File > New/Open: a request that would write into the old scene is cancelled, never applied elsewhere."""
    global _loading
    _loading = True
    job = JOBS.job
    if job is not None and job.touches_scene:
        JOBS.cancel("cancelled because another file was loaded (nothing was written)")


@persistent
def on_load_post(*_args) -> None:
    global _loading
    _loading = False
    while _deferred:
        report(*_deferred.pop(0))
    if JOBS.busy or JOBS.status.ended:
        ensure_timer()  # (persistent, so normally still there) keeps the status bar's outcome up to date


# ---------------------------------------------------------------------------- status bar
def draw_status(self, context) -> None:
    """STATUSBAR_HT_header: the running request with its progress and Cancel, or the last outcome."""
    layout, status = self.layout, JOBS.status
    if JOBS.busy:
        row = layout.row(align=True)
        row.label(text="", icon="SHAPEKEY_DATA")
        row.progress(factor=status.factor, type="BAR", text=(status.message or status.running)[:80])
        row.operator("faceedit.cancel", text="", icon="CANCEL")
    elif status.ended and time.monotonic() - status.ended < SHOW_OUTCOME_S:
        text = status.error or status.message
        layout.label(text=f"FaceEdit: {text[:100]}", icon="ERROR" if status.error else "CHECKMARK")


# ---------------------------------------------------------------------------- registration
_keymaps: list = []


def _load_handlers() -> list:
    """(handler list, function) pairs: load_post_fail too, so a failed load never leaves reports deferred."""
    pairs = [(bpy.app.handlers.load_pre, on_load_pre), (bpy.app.handlers.load_post, on_load_post)]
    if hasattr(bpy.app.handlers, "load_post_fail"):
        pairs.append((bpy.app.handlers.load_post_fail, on_load_post))
    return pairs


def register() -> None:
    for handlers, fn in _load_handlers():
        handlers.append(fn)
    bpy.types.STATUSBAR_HT_header.append(draw_status)
    kc = bpy.context.window_manager.keyconfigs.addon if bpy.context.window_manager else None
    if kc is not None:  # None in background mode
        km = kc.keymaps.new(name="Window", space_type="EMPTY")
        _keymaps.append((km, km.keymap_items.new("faceedit.cancel", "ESC", "PRESS")))


def stop() -> None:
    if bpy.app.timers.is_registered(timer_step):
        bpy.app.timers.unregister(timer_step)
    JOBS.cancel("cancelled: the add-on was disabled")
    JOBS.close()
    _progress_cursor(False)


def unregister() -> None:
    stop()
    for km, kmi in _keymaps:
        km.keymap_items.remove(kmi)
    _keymaps.clear()
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
    for handlers, fn in _load_handlers():
        if fn in handlers:
            handlers.remove(fn)
