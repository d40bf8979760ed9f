"""In-memory mock of the Hugging Face Hub HTTP API, for offline tests on 127.0.0.1.

Covers what `push_to_hub`, `from_pretrained(repo_id)`, `hf_hub_download`, `snapshot_download` and
`HfApi().upload_folder` need: model repos named "namespace/name", files committed inline (no LFS/Xet),
a single "main" branch whose commit sha is a hash of its contents. huggingface_hub reads `HF_ENDPOINT`
at import time, so run clients in a subprocess with `env=hub_env(hub.endpoint, tmp_home)`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

_API = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree|preupload|commit)/([^/]+)(?:/(.+))?)?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def _oid(data: bytes) -> str:
    """Git blob sha1 of `data`, as the Hub reports it for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class MockHub:
    """Context manager serving `repos` (repo_id -> {path: content}) at `endpoint` on a free port."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"hub": self}))
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> MockHub:
        self._thread.start()
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def sha(self, repo: str) -> str:
        """Commit sha of `repo`'s main branch (derived from its current contents)."""
        with self.lock:
            listing = json.dumps({path: _oid(data) for path, data in sorted(self.repos[repo].items())})
        return hashlib.sha1(f"{repo}\n{listing}".encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: MockHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Send `body` (bytes as-is, anything else as JSON); HEAD requests get the headers only."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, code: str | None) -> None:
        """Reply 404 with `X-Error-Code: code`; `None` means an unhandled route, logged to stderr."""
        if code is None:
            sys.stderr.write(f"MockHub: unhandled {self.command} {self.path}\n")
        self._reply(404, {"error": code or "Not found"}, {"X-Error-Code": code} if code else {})

    def _route(self, pattern: re.Pattern[str]) -> list[str] | None:
        """Unquoted groups ("" if unmatched) of `pattern` matched against the still-quoted request path."""
        m = pattern.match(urlsplit(self.path).path)
        return [unquote(g or "") for g in m.groups()] if m else None

    def _files(self, repo: str, rev: str) -> dict[str, bytes] | None:
        """Snapshot of `repo` at `rev` ("main" or its current sha), or None after replying 404."""
        with self.hub.lock:
            if repo in self.hub.repos and rev in ("", "main", self.hub.sha(repo)):
                return dict(self.hub.repos[repo])
            exists = repo in self.hub.repos
        self._error("RevisionNotFound" if exists else "RepoNotFound")
        return None

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if m := self._route(_RESOLVE):
            repo, rev, name = m
            if (files := self._files(repo, rev)) is not None:
                if name not in files:
                    return self._error("EntryNotFound")
                headers = {"X-Repo-Commit": self.hub.sha(repo), "ETag": f'"{_oid(files[name])}"'}
                self._reply(200, files[name], {"Content-Type": "application/octet-stream", **headers})
        elif (m := self._route(_API)) and m[1] in ("", "revision", "tree"):
            repo, kind, rev, sub = m
            if (files := self._files(repo, rev)) is None:
                return
            if kind == "tree":
                return self._tree(files, sub, "recursive=true" in urlsplit(self.path).query)
            sha, siblings = self.hub.sha(repo), [{"rfilename": path} for path in sorted(files)]
            self._reply(200, {"id": repo, "modelId": repo, "sha": sha, "private": False, "siblings": siblings})
        else:
            self._error(None)

    def _tree(self, files: dict[str, bytes], sub: str, recursive: bool) -> None:
        """List files and folders under folder `sub` (only its direct children unless `recursive`)."""
        prefix = f"{sub.strip('/')}/" if sub else ""
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for path, data in sorted(files.items()):
            if path.startswith(prefix):
                parts = path[len(prefix) :].split("/")
                depth = len(parts) if recursive else min(len(parts), 2)
                dirs.update(prefix + "/".join(parts[:i]) for i in range(1, depth))
                if recursive or len(parts) == 1:
                    entries.append({"type": "file", "path": path, "size": len(data), "oid": _oid(data)})
        if prefix and not entries and not dirs:
            return self._error("EntryNotFound")
        folders = [{"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()} for d in sorted(dirs)]
        self._reply(200, folders + entries)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, m = urlsplit(self.path).path, self._route(_API)
        if path == "/api/validate-yaml":
            self._reply(200, {"errors": [], "warnings": []})
        elif path == "/api/repos/create":
            body = json.loads(raw)
            repo = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
            with self.hub.lock:
                exists = repo in self.hub.repos
                self.hub.repos.setdefault(repo, {})
            self._reply(409 if exists else 200, {"url": f"{self.hub.endpoint}/{repo}"})
        elif not m or m[1] not in ("preupload", "commit"):
            self._error(None)
        elif self._files(m[0], m[2]) is None:
            pass  # 404 already sent
        elif m[1] == "preupload":
            paths = [f["path"] for f in json.loads(raw)["files"]]
            self._reply(200, {"files": [{"path": p, "uploadMode": "regular", "shouldIgnore": False} for p in paths]})
        else:
            with self.hub.lock:
                files = self.hub.repos[m[0]]
                for op in map(json.loads, filter(None, raw.decode().splitlines())):
                    if op["key"] == "file":
                        files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
                    elif op["key"] == "deletedFile":
                        files.pop(op["value"]["path"], None)
                sha = self.hub.sha(m[0])
            self._reply(200, {"commitUrl": f"{self.hub.endpoint}/{m[0]}/commit/{sha}", "commitOid": sha})


def hub_env(endpoint: str, home: str) -> dict[str, str]:
    """Copy of os.environ pointing huggingface_hub at `endpoint`, with its cache under `home`."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=home, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1")
    env["HF_TOKEN"] = "dummy"
    return env
