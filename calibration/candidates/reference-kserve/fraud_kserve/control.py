"""The deploy / rollback commands' view of the running server (stdlib only: starts in ~50 ms).

``GET /version`` says which model is live (version and digest); ``POST /admin/reload`` asks the
server to load a version and swap it in. The admin route needs the token the server keeps in the
state directory, so only someone who can read the registry can change what is served.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fraud_kserve import settings

TOKEN_FILE = "admin.token"
TOKEN_HEADER = "X-Admin-Token"


class ControlError(Exception):
    """The server could not be reached, refused, or does not serve what it was asked to."""


def token_path(state: Path | None = None) -> Path:
    return (state or settings.state_dir()) / TOKEN_FILE


def admin_token(create: bool = False, state: Path | None = None) -> str:
    """``$TAKEHOME_ADMIN_TOKEN``, else the token file (created by the server, mode 0600)."""
    env = os.environ.get("TAKEHOME_ADMIN_TOKEN")
    if env:
        return env
    path = token_path(state)
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if not create:
            raise ControlError(f"no admin token at {path}: is TAKEHOME_STATE_DIR the server's state dir?") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token)
    os.replace(tmp, path)
    return token


class ServerClient:
    def __init__(self, base_url: str, timeout_s: float = 30.0, connect_retries_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_retries_s = connect_retries_s

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        hdrs = {"Accept": "application/json", **({"Content-Type": "application/json"} if data else {}),
                **(headers or {})}
        end = time.monotonic() + self.connect_retries_s
        while True:
            req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=hdrs)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - our own server
                    return json.loads(resp.read() or b"{}")
            except urllib.error.HTTPError as exc:
                body = exc.read()[:500].decode("utf-8", "replace")
                raise ControlError(f"{method} {path} -> HTTP {exc.code}: {body}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                # The server may be restarting: retry connection failures for a few seconds.
                if time.monotonic() > end:
                    raise ControlError(f"{method} {self.base_url}{path} failed: {exc}") from None
                time.sleep(0.25)
            except ValueError as exc:
                raise ControlError(f"{method} {path} did not return JSON: {exc}") from None

    def served(self) -> dict[str, Any]:
        out = self._call("GET", "/version")
        if not out.get("version") or not out.get("sha256"):
            raise ControlError(f"GET /version returned no live model: {out}")
        return out

    def reload(self, version: str, sha256: str) -> dict[str, Any]:
        return self._call("POST", "/admin/reload", {"version": version, "sha256": sha256},
                          {TOKEN_HEADER: admin_token()})

    def verify(self, version: str, sha256: str) -> dict[str, Any]:
        out = self.served()
        if out["version"] != version or out["sha256"] != sha256:
            raise ControlError(f"the server reports {out['version']} (sha256 {out['sha256'][:12]}), "
                               f"expected {version} (sha256 {sha256[:12]})")
        return out
