"""CURVE encryption and client authentication for the server, checked before it starts.

A server with CURVE keys must say who may connect: a folder of client public keys (`*.key`
files from `faceedit-server keys`). A missing or empty folder, a secret key file that holds no
secret key, or '*' (any client key) without `allow_any_client` refuse to start with a message
naming the file or folder; '*' with it starts, and the server says so loudly in its log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq import auth as zmq_auth

log = logging.getLogger("faceedit.server")
ANY_CLIENT = "*"


@dataclass
class CurveConfig:
    """server_secret: the server's secret key file; clients_dir: the public keys allowed to connect,
    or '*' for any key (only with allow_any_client)."""

    server_secret: Path
    clients_dir: Path | str
    allow_any_client: bool = False

    @property
    def any_client(self) -> bool:
        return str(self.clients_dir) == ANY_CLIENT

    def server_keys(self) -> tuple[bytes, bytes]:
        """(public, secret) of the server; ValueError naming the file when it does not hold both."""
        path = Path(self.server_secret)
        if not path.is_file():
            raise ValueError(f"CURVE secret key file {path} does not exist (make one with `faceedit-server keys`)")
        try:
            public, secret = zmq_auth.load_certificate(str(path))
        except (OSError, ValueError) as exc:
            raise ValueError(f"CURVE secret key file {path} is not a key file: {exc}") from None
        if secret is None:
            raise ValueError(f"{path} holds no secret key: give the server's .key_secret file")
        return public, secret

    def check(self) -> None:
        """ValueError, naming the flag, file or folder at fault, for any misconfiguration."""
        self.server_keys()
        if self.any_client:
            if not self.allow_any_client:
                raise ValueError(
                    "--curve-clients '*' would let any client key connect: give a folder of allowed client "
                    "public keys, or pass --allow-any-client as well if that is really meant"
                )
            return
        folder = Path(self.clients_dir)
        if not folder.is_dir():
            raise ValueError(f"CURVE clients folder {folder} does not exist (no client could connect)")
        try:
            keys = zmq_auth.load_certificates(str(folder))
        except (OSError, ValueError) as exc:
            raise ValueError(f"CURVE clients folder {folder} holds a file that is not a public key: {exc}") from None
        if not keys:
            raise ValueError(
                f"CURVE clients folder {folder} holds no client public keys (*.key files from `faceedit-server keys`)"
            )

    def start(self, ctx: zmq.Context, sock: zmq.Socket):
        """Make sock a CURVE server and start the authenticator that checks client keys; returns it (to stop)."""
        from zmq.auth.thread import ThreadAuthenticator

        self.check()
        public, secret = self.server_keys()
        auth = ThreadAuthenticator(ctx)
        auth.start()
        if self.any_client:
            log.warning("=" * 72)
            log.warning("CURVE: ANY client key may connect (--allow-any-client): clients are encrypted, not checked")
            log.warning("=" * 72)
            auth.configure_curve(domain="*", location=zmq_auth.CURVE_ALLOW_ANY)
        else:
            auth.configure_curve(domain="*", location=str(self.clients_dir))
        sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
        return auth
