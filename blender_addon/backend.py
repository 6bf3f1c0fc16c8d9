"""A local FaceEdit backend started and stopped from Blender (as Dream Textures does with its own).

The preferences say how to start it: a Python environment with FaceEdit installed (Start runs
`<env>/bin/python -m backend_server`, `Scripts\\python.exe` on Windows) or a command (e.g.
`faceedit-server`), plus extra arguments. Start picks a free loopback port, points the add-on at
it, writes the backend's output to a log file in the extension's user folder and connects once
the backend says it listens (the first hello then waits while the backend loads its models: the
add-on's liveness probes keep it alive). Stop sends Ctrl-C (SIGINT: the server shuts down
cleanly), then terminates it after a grace period. A backend Blender started is stopped when
the add-on is disabled and when Blender quits (atexit). A remote backend (another address,
CURVE keys) stays possible: simply do not Start one.
"""

from __future__ import annotations

import atexit
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import bpy

from .operators import refuse

LOG_LINES = 8
GRACE_S = 5.0
READY_LINE = "server listening on"  # what faceedit-server logs once its socket is bound
START_LIMIT_S = 300.0  # a backend that has not said it listens by then is connected to anyway


class Backend:
    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.address = ""
        self.log_path: Path | None = None
        self.command: list[str] = []
        self.started = 0.0
        self.starting = False  # started, not yet listening: the add-on connects once it listens
        self._log_file = None

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def state(self) -> str:
        if self.proc is None:
            return "stopped"
        code = self.proc.poll()
        if code is None:
            return f"running (pid {self.proc.pid}) on {self.address}, for {time.monotonic() - self.started:.0f} s"
        return f"exited with code {code}" + (" (see its log)" if code else "")

    def log_tail(self, n: int = LOG_LINES) -> list[str]:
        if self.log_path is None or not self.log_path.is_file():
            return []
        with open(self.log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return lines[-n:]

    # ------------------------------------------------------------------ start / stop
    def start(self, env: str, command: str, args: str, log_dir: Path) -> str:
        """Start the backend on a free loopback port -> its address. Raises ValueError with what to fix."""
        if self.running:
            raise ValueError(f"a backend is already running ({self.state()})")
        cmd = backend_command(env, command) + shlex.split(args, posix=os.name != "nt")
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self.command = cmd + ["--bind", self.address]
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "backend.log"
        self._close_log()
        self._log_file = open(self.log_path, "wb")
        child_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONNOUSERSITE")}
        child_env["PYTHONUNBUFFERED"] = "1"
        flags = subprocess.CREATE_NEW_PROCESS_GROUP if os.name == "nt" else 0
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env,
                creationflags=flags,
                start_new_session=os.name != "nt",
            )
        except OSError as exc:
            self._close_log()
            self.proc = None
            raise ValueError(f"could not start {shlex.join(self.command)}: {exc}") from None
        self.started = time.monotonic()
        self.starting = True
        return self.address

    def listening(self) -> bool:
        """The backend has bound its socket (its log says so)."""
        return any(READY_LINE in line for line in self.log_tail(200))

    def stop(self, grace_s: float = GRACE_S) -> str:
        """Stop the backend this Blender started (Ctrl-C, then terminate, then kill) -> what happened."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            self._close_log()
            return self.state()
        try:
            if os.name == "nt":
                proc.terminate()
            else:
                proc.send_signal(signal.SIGINT)
            proc.wait(grace_s)
            how = "stopped"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace_s)
            how = "killed (it ignored Ctrl-C)"
        except OSError:
            how = "gone"
        self._close_log()
        return f"backend {how} (exit code {proc.returncode})"

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def backend_command(env: str, command: str) -> list[str]:
    """The command that starts the backend, from the preferences; ValueError says what to set."""
    if command.strip():
        return shlex.split(command, posix=os.name != "nt")
    if not env.strip():
        raise ValueError(
            "set 'Backend environment' (a Python environment with FaceEdit installed, e.g. the repository's .venv) "
            "or 'Backend command' (e.g. faceedit-server) in the FaceEdit preferences"
        )
    root = Path(bpy.path.abspath(env)).expanduser()
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.is_file():
        raise ValueError(f"'{root}' holds no Python environment ({python} is missing): check 'Backend environment'")
    return [str(python), "-m", "backend_server"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BACKEND = Backend()
atexit.register(BACKEND.stop)  # quitting Blender stops a backend it started


def step() -> bool:
    """From the poll timer: follow a starting backend until it listens (then connect) or exits
    (then report its log) -> whether it is still starting."""
    from . import session

    b = BACKEND
    if not b.starting:
        return False
    if not b.running:
        b.starting = False
        tail = " | ".join(b.log_tail(4)) or "no output"
        text = f"the backend exited before it listened ({b.state()}): {tail}"
        session.JOBS.local_error(text)
        session.report("ERROR", text)
        return False
    if b.listening() or time.monotonic() - b.started > START_LIMIT_S:
        b.starting = False
        if not session.JOBS.busy:
            session.server.clear()
            try:
                session.with_server("Connect", lambda: None, touches_scene=False)
            except Exception as exc:  # a timer must not raise
                session.report("ERROR", f"could not connect to the backend: {exc}")
        return False
    return True


def log_dir() -> Path:
    try:
        return Path(bpy.utils.extension_path_user(__package__, path="backend", create=True))
    except (ValueError, AttributeError):  # not installed as an extension (legacy add-on)
        return Path(bpy.app.tempdir or ".") / "faceedit-backend"


def draw_state(layout) -> None:
    """The backend's state, its buttons and the end of its log (preferences and sidebar)."""
    box = layout.column()
    running = BACKEND.running
    box.label(text=f"Backend: {BACKEND.state()}", icon="PLAY" if running else "PAUSE")
    row = box.row(align=True)
    row.operator("faceedit.backend_start", icon="PLAY")
    row.operator("faceedit.backend_stop", icon="CANCEL")
    log = row.row(align=True)  # Blender's wm.path_open opens it in the system's viewer
    log.enabled = BACKEND.log_path is not None and BACKEND.log_path.is_file()
    log.operator("wm.path_open", text="Open Log", icon="TEXT").filepath = str(BACKEND.log_path or "")
    for line in BACKEND.log_tail():
        box.label(text=line[:120])


class FACEEDIT_OT_backend_start(bpy.types.Operator):
    """Start a local FaceEdit backend on a free loopback port (from the preferences' environment or command),
    point the add-on at it and connect"""

    bl_idname = "faceedit.backend_start"
    bl_label = "Start Backend"

    @classmethod
    def poll(cls, context):
        from . import prefs

        p = prefs.preferences()
        unset = p is None or not (p.backend_env.strip() or p.backend_command.strip())
        return refuse(
            cls,
            f"The backend is already {BACKEND.state()}" if BACKEND.running else None,
            "Set 'Backend environment' or 'Backend command' in the FaceEdit preferences" if unset else None,
        )

    def execute(self, context):
        from . import prefs, session

        p = prefs.preferences()
        try:
            address = BACKEND.start(p.backend_env, p.backend_command, p.backend_args, log_dir())
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        p.address = address
        session.server.clear()
        session.ensure_timer()  # connects once the backend listens (backend.step)
        self.report({"INFO"}, f"started {shlex.join(BACKEND.command)} (log: {BACKEND.log_path})")
        return {"FINISHED"}


class FACEEDIT_OT_backend_stop(bpy.types.Operator):
    """Stop the backend Blender started (a request in flight is cancelled first)"""

    bl_idname = "faceedit.backend_stop"
    bl_label = "Stop Backend"

    @classmethod
    def poll(cls, context):
        return refuse(cls, None if BACKEND.running else "No backend started by Blender is running")

    def execute(self, context):
        from . import session

        session.JOBS.cancel("cancelled: the backend was stopped")
        session.server.clear()
        self.report({"INFO"}, BACKEND.stop())
        return {"FINISHED"}


def register() -> None:
    from . import prefs, session

    for hooks, fn in ((session.STEP_HOOKS, step), (prefs.DRAW_HOOKS, draw_state)):
        if fn not in hooks:
            hooks.append(fn)


def unregister() -> None:
    from . import prefs, session

    for hooks, fn in ((session.STEP_HOOKS, step), (prefs.DRAW_HOOKS, draw_state)):
        if fn in hooks:
            hooks.remove(fn)
    if BACKEND.running:
        print(f"FaceEdit: {BACKEND.stop()}", file=sys.stderr)


CLASSES = (FACEEDIT_OT_backend_start, FACEEDIT_OT_backend_stop)
