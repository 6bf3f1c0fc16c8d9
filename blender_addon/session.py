"""The add-on's runtime: one Jobs runner, what the server said in `hello`, the poll timer."""

from __future__ import annotations

from pathlib import Path

import bpy

from . import prefs
from .jobs import Jobs, Settings
from .wire.client import CurveKeys, ServerError
from .wire.net import is_loopback
from .wire.protocol import PROTOCOL_VERSION

POLL_INTERVAL_S = 0.02  # while a request is in flight; the timer stops when idle
server: dict = {}  # last hello: tier, models, expressions, head_verts, head_hash, n_shape, n_exp


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


JOBS = Jobs(settings)


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
    )
    return server


def redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def timer_step() -> float | None:
    """The timer's body: poll, make a finished edit one undo step, redraw -> the next interval or None."""
    had_job = JOBS.job
    busy = JOBS.poll_step()
    if had_job is not None and JOBS.job is None and not JOBS.status.error:
        try:  # the reply changed the scene: make it one undo step
            bpy.ops.ed.undo_push(message=f"FaceEdit: {had_job.label}")
        except RuntimeError:
            pass
    redraw()
    return POLL_INTERVAL_S if busy else None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(timer_step):
        bpy.app.timers.register(timer_step, first_interval=POLL_INTERVAL_S)


def stop() -> None:
    if bpy.app.timers.is_registered(timer_step):
        bpy.app.timers.unregister(timer_step)
    JOBS.cancel()
    JOBS.close()
