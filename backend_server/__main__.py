"""`faceedit-server` / `python -m backend_server`: run the backend, or make CURVE keys."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path


def _serve(ns) -> int:
    from backend_server.server import CurveConfig, Server

    def factory():
        from faceedit_core.factory import build_editor

        options = {"sr_precision": ns.sr_precision} if ns.models else {}
        head = {"flame": ns.flame, "landmarks": ns.landmarks, "n_exp": ns.n_exp}
        return build_editor(ns.models, device=ns.device, **{k: v for k, v in head.items() if v is not None}, **options)

    from faceedit_core.errors import MissingModelError
    from faceedit_core.factory import preflight

    if ns.models:
        from faceedit_core.storage.models_dir import ModelsDir

        logging.info("%s", ModelsDir(ns.models).describe())
    try:  # refuse to start without the files an edit needs; the models load on the first request
        models = preflight(ns.models, flame=ns.flame, landmarks=ns.landmarks)
    except MissingModelError as exc:
        print(f"faceedit-server: {exc}", file=sys.stderr)
        return 2
    if models.get("tier") == "preview":
        logging.info("preview tier on %s (landmarks %s)", models["flame"], ", ".join(models["landmarks"]))
    elif ns.models:
        logging.info("paper tier: %d trained mapper set(s) in %s", len(models["mappers"]), Path(ns.models) / "mappers")
    curve = CurveConfig(Path(ns.curve_secret), ns.curve_clients, ns.allow_any_client) if ns.curve_secret else None
    try:
        server = Server(factory, ns.bind, curve=curve, models=models)
    except ValueError as exc:
        print(f"faceedit-server: {exc}", file=sys.stderr)
        return 2
    return run(server)


def run(server) -> int:
    """Bind and serve until SIGTERM or SIGINT, then shut down cleanly (the running job is cancelled,
    every request in flight answered, the sockets closed) -> exit status. A second signal ends the
    process at once."""

    def stop(signum, frame):
        signal.signal(signum, signal.SIG_DFL)
        logging.info("faceedit-server: %s received, shutting down", signal.Signals(signum).name)
        server.stop()

    try:
        server.open()
    except ValueError as exc:
        print(f"faceedit-server: {exc}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    server.serve_forever()
    return 0


def _keys(ns) -> int:
    import zmq.auth

    out = Path(ns.out)
    for name in ("server", "client"):
        (out / name).mkdir(parents=True, exist_ok=True)
        public, secret = zmq.auth.create_certificates(str(out / name), name)
        print(f"{name}: public {public}, secret {secret}")
    print(f"start the server with --curve-secret {out}/server/server.key_secret --curve-clients {out}/client")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("faceedit")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    from faceedit_core.next3d.precision import PRECISIONS

    parser = argparse.ArgumentParser(prog="faceedit-server", description="FaceEdit backend (ZeroMQ + msgpack).")
    sub = parser.add_subparsers(dest="command")
    keys = sub.add_parser("keys", help="generate CURVE key pairs for the server and a client")
    keys.add_argument("--out", default="faceedit-keys", help="folder for the key files")
    for p in (parser,):
        p.add_argument(
            "--bind", default="tcp://127.0.0.1:5555", help="address to bind (loopback unless CURVE keys are given)"
        )
        p.add_argument(
            "--models",
            default=None,
            help="folder with your own model files: flame/ + next3d/ (+ clip/, arcface/) serve the paper tier; "
            "flame/ alone serves the preview tier on that FLAME",
        )
        p.add_argument(
            "--flame",
            default=None,
            help="your FLAME file (FLAME 2020 generic_model.pkl, FLAME 2023 flame2023*.pkl): the preview tier on it",
        )
        p.add_argument(
            "--landmarks", default=None, help="with --flame: DECA's landmark_embedding.npy (default: beside it)"
        )
        p.add_argument(
            "--n-exp",
            type=int,
            default=None,
            help="with --flame: expression coefficients the preview tier edits (default 50, up to the file's 100)",
        )
        p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
        p.add_argument(
            "--sr-precision",
            default="auto",
            choices=PRECISIONS,
            help="paper tier: Next3D super-resolution precision (auto: float16 on CUDA, float32 "
            "elsewhere, as released; bf16: 2x faster views on CPUs with AMX)",
        )
        p.add_argument("--curve-secret", default=None, help="server secret key file (from `faceedit-server keys`)")
        p.add_argument("--curve-clients", default=None, help="folder of allowed client public keys")
        p.add_argument(
            "--allow-any-client",
            action="store_true",
            help="with --curve-clients '*': let any client key connect (encrypted, but nobody is checked)",
        )
        p.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--version", action="version", version=f"faceedit-server {_version()}")
    ns = parser.parse_args(argv)
    if bool(ns.curve_secret) != bool(ns.curve_clients):
        parser.error(
            "--curve-secret and --curve-clients go together: the server's secret key file and the folder "
            "of allowed client public keys (both from `faceedit-server keys`)"
        )
    if getattr(ns, "flame", None) is None and getattr(ns, "models", None) is None and (ns.landmarks or ns.n_exp):
        parser.error("--landmarks and --n-exp go with --flame FILE (or a --models folder with flame/)")
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO, format="%(asctime)s %(message)s")
    return _keys(ns) if ns.command == "keys" else _serve(ns)


if __name__ == "__main__":
    sys.exit(main())
