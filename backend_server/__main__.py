"""`faceedit-server` / `python -m backend_server`: run the backend, or make CURVE keys."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _serve(ns) -> int:
    from backend_server.server import CurveConfig, Server

    def factory():
        from faceedit_core.factory import build_editor

        options = {"sr_precision": ns.sr_precision} if ns.models else {}
        return build_editor(ns.models, device=ns.device, **options)

    from faceedit_core.errors import MissingModelError
    from faceedit_core.factory import preflight

    if ns.models:
        from faceedit_core.storage.models_dir import ModelsDir

        logging.info("%s", ModelsDir(ns.models).describe())
    try:  # refuse to start without the files an edit needs; the models load on the first request
        models = preflight(ns.models)
    except MissingModelError as exc:
        print(f"faceedit-server: {exc}", file=sys.stderr)
        return 2
    if ns.models:
        logging.info("paper tier: %d trained mapper set(s) in %s", len(models["mappers"]), Path(ns.models) / "mappers")
    curve = CurveConfig(Path(ns.curve_secret), Path(ns.curve_clients)) if ns.curve_secret else None
    try:
        server = Server(factory, ns.bind, curve=curve, models=models)
    except ValueError as exc:
        print(f"faceedit-server: {exc}", file=sys.stderr)
        return 2
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
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
        p.add_argument("--models", default=None, help="folder with your own model files (paper tier)")
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
        p.add_argument("-v", "--verbose", action="store_true")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO, format="%(asctime)s %(message)s")
    return _keys(ns) if ns.command == "keys" else _serve(ns)


if __name__ == "__main__":
    sys.exit(main())
