"""A small fake Hugging Face Hub on 127.0.0.1: `push_to_hub` -> `from_pretrained("user/name")`, tested offline.

It speaks just enough of the Hub's HTTP API for huggingface_hub 2.x (and so transformers / diffusers) to create a
repo, commit files to it, list it and download from it:

    POST   /api/repos/create                                  create a repo (409 + url if it exists)
    DELETE /api/repos/delete                                  delete a repo
    POST   /api/validate-yaml                                 model card metadata check (always fine)
    GET    /api/whoami-v2                                     the fake user
    GET    /api/agent-harnesses                               empty registry (User-Agent agent detection)
    *      /api/telemetry/...                                 swallowed
    GET    /api/{models|datasets}/{repo}[/revision/{rev}]     repo info: sha + siblings
    GET    /api/{models|datasets}/{repo}/tree/{rev}[/{path}]  list files (optionally recursive)
    POST   /api/{models|datasets}/{repo}/preupload/{rev}      every file is "regular": no LFS / Xet upload
    POST   /api/{models|datasets}/{repo}/commit/{rev}         ndjson: header, base64 files, deletions
    HEAD/GET /[datasets/]{repo}/resolve/{rev}/{path}          file download with ETag / X-Repo-Commit

Files are stored content-addressed (git blob sha1) under `storage/blobs`; repos, branches and commits live in
memory. Only the `main` branch exists (no PRs, tags or LFS). Errors carry the `X-Error-Code` header the client maps
to `RepositoryNotFoundError`, `RevisionNotFoundError` and `EntryNotFoundError`. Requests the fake does not know are
answered 404 and recorded in `FakeHub.unhandled`, so a test can spot a new client call.

The fake only serves; pointing the client libraries at it (their endpoint is read at import time) is
`use_fake_hub()` below, and the pytest fixture `fake_hub` in `tests/hub_fixtures.py`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

FAKE_USER = "fake-user"
FAKE_TOKEN = "hf_fake"
MAX_BODY_BYTES = 256 * 1024 * 1024  # larger uploads are refused with 413

# URL segment <-> repo type: `/api/models/...` but `/{repo}/resolve/...` for models, `/datasets/{repo}/...` else.
_API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file: what the Hub calls a regular file's `oid` / ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    date: str
    files: dict[str, str]  # path in repo -> blob sha1


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        """A branch name or a full commit oid -> that commit."""
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


class HubError(Exception):
    """An error answer, with the `X-Error-Code` huggingface_hub maps to its exception classes."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


class FakeHub:
    """The fake Hub: state plus a `ThreadingHTTPServer` on 127.0.0.1 (free port) running in a daemon thread.

    Use as a context manager, or `start()` / `stop()`. `storage` defaults to a temporary folder removed on stop.
    """

    def __init__(self, storage: str | Path | None = None, *, user: str = FAKE_USER, token: str = FAKE_TOKEN) -> None:
        self._owns_storage = storage is None
        self.storage = Path(tempfile.mkdtemp(prefix="fake-hub-") if storage is None else storage)
        self.user = user
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[str] = []  # "METHOD /path" of every request, in order
        self.unhandled: list[str] = []  # requests no route matched
        self._salt = uuid.uuid4().hex  # commit oids never repeat across servers (the client cache is keyed by them)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake hub is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        if self._server is not None:
            return self
        (self.storage / "blobs").mkdir(parents=True, exist_ok=True)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.block_on_close = False  # never wait on a client that keeps a connection open
        server.hub = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.name = f"fake-hub-{self.endpoint}"
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()  # returns once serve_forever has left its loop
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        if self._owns_storage:
            shutil.rmtree(self.storage, ignore_errors=True)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- state, also handy from tests -----------------------------------------------------------------------------

    def create_repo(self, repo_id: str, *, repo_type: str = "model", private: bool = False) -> Repo:
        """Create a repo with one initial commit holding `.gitattributes`, like the real Hub."""
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo", "RepoAlreadyExists")
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now())
            self.repos[(repo_type, repo_id)] = repo
            blob = self._store_blob(b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
            self._add_commit(repo, "main", "initial commit", {".gitattributes": blob})
            return repo

    def list_files(self, repo_id: str, *, revision: str = "main", repo_type: str = "model") -> list[str]:
        return sorted(self._commit(self._repo(repo_type, repo_id), revision).files)

    def read_file(self, repo_id: str, path: str, *, revision: str = "main", repo_type: str = "model") -> bytes:
        commit = self._commit(self._repo(repo_type, repo_id), revision)
        if path not in commit.files:
            raise HubError(404, f"{path} not found in {repo_id}@{revision}", "EntryNotFound", commit.oid)
        return self._blob_path(commit.files[path]).read_bytes()

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _blob_path(self, sha1: str) -> Path:
        return self.storage / "blobs" / sha1

    def _store_blob(self, data: bytes) -> str:
        sha1 = git_blob_sha1(data)
        path = self._blob_path(sha1)
        if not path.exists():
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha1

    def _add_commit(self, repo: Repo, branch: str, title: str, files: dict[str, str]) -> Commit:
        parent = repo.branches.get(branch)
        seed = json.dumps([self._salt, parent, title, sorted(files.items()), len(repo.commits)])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, _now(), dict(files))
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit

    def repo_url(self, repo: Repo) -> str:
        return f"{self.endpoint}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}"


# -- HTTP side ---------------------------------------------------------------------------------------------------

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_API_REPO = r"/api/(?P<kind>models|datasets|spaces)/" + _REPO
_ROUTES: list[tuple[tuple[str, ...], re.Pattern[str], str]] = [
    (("GET",), re.compile(r"/api/agent-harnesses"), "agent_harnesses"),
    (("GET",), re.compile(r"/api/whoami-v2"), "whoami"),
    (("GET", "HEAD", "POST"), re.compile(r"/api/telemetry/.*"), "telemetry"),
    (("POST",), re.compile(r"/api/repos/create"), "create_repo"),
    (("DELETE",), re.compile(r"/api/repos/delete"), "delete_repo"),
    (("POST",), re.compile(r"/api/validate-yaml"), "validate_yaml"),
    (("GET",), re.compile(_API_REPO + r"(?:/revision/(?P<rev>[^/]+))?"), "repo_info"),
    (("GET",), re.compile(_API_REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"), "tree"),
    (("POST",), re.compile(_API_REPO + r"/preupload/(?P<rev>[^/]+)"), "preupload"),
    (("POST",), re.compile(_API_REPO + r"/commit/(?P<rev>[^/]+)"), "commit"),
    (
        ("GET", "HEAD"),
        re.compile(r"/(?:(?P<kind>datasets|spaces)/)?" + _REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
        "resolve",
    ),
]


class _Handler(BaseHTTPRequestHandler):
    """One request. HTTP/1.0 (the default): the connection closes after each answer, so no socket outlives stop()."""

    server_version = "FakeHub/1.0"

    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # the base class names it `format`
        pass  # quiet; `FakeHub.requests` keeps the log

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self.hub.requests.append(f"{method} {url.path}")
        try:
            for methods, pattern, name in _ROUTES:
                match = pattern.fullmatch(url.path)
                if match and method in methods:
                    # Segments arrive quoted (a revision like `refs/pr/1` is one `%2F`-quoted segment).
                    params = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
                    with self.hub._lock:
                        getattr(self, f"_route_{name}")(**params)
                    return
            self.hub.unhandled.append(f"{method} {url.path}")
            raise HubError(404, f"fake hub: no route for {method} {url.path}")
        except HubError as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            if error.commit:
                headers["X-Repo-Commit"] = error.commit
            self._send_json({"error": error.message}, status=error.status, headers=headers)
        except Exception as error:  # a bug in the fake: say so and keep serving
            print(f"fake hub: {method} {self.path} failed: {error!r}", file=sys.stderr)
            message = f"fake hub crashed: {error!r}"
            # 501, not 500: huggingface_hub retries 500 with backoff, which would only slow the failing test down.
            self._send_json({"error": message}, status=501, headers={"X-Error-Message": message})

    # -- request / response helpers -------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                total += size
                if total > MAX_BODY_BYTES:
                    raise HubError(413, "fake hub: request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise HubError(413, "fake hub: request body too large")
        return self.rfile.read(length)

    def _json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self._body() or b"{}")
        except ValueError as error:
            raise HubError(400, f"invalid JSON body: {error}") from error
        if not isinstance(body, dict):
            raise HubError(400, "JSON body must be an object")
        return body

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _authenticated(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _require_token(self) -> None:
        if not self._authenticated():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _readable_repo(self, kind: str | None, repo_id: str) -> Repo:
        """The repo, as a reader sees it: a private repo without the token looks missing, like on the Hub."""
        repo = self.hub._repo(_API_TYPES[kind or "models"], repo_id)
        if repo.private and not self._authenticated():
            raise HubError(404, f"Repository not found: {repo_id}", "RepoNotFound")
        return repo

    def _writable_repo(self, kind: str, repo_id: str, revision: str) -> tuple[Repo, Commit]:
        self._require_token()
        repo = self._readable_repo(kind, repo_id)
        if self.query.get("create_pr") in ("1", "true", "True"):
            raise HubError(400, "fake hub: create_pr is not supported")
        if revision not in repo.branches:
            raise HubError(
                404, f"Invalid rev id: {revision} (the fake hub only commits to branches)", "RevisionNotFound"
            )
        return repo, repo.commits[repo.branches[revision]]

    # -- routes ---------------------------------------------------------------------------------------------------

    def _route_agent_harnesses(self) -> None:
        self._send_json({"standardEnvVars": [], "harnesses": {}})

    def _route_whoami(self) -> None:
        self._require_token()
        token_info = {"displayName": "fake", "role": "write"}
        self._send_json({"type": "user", "name": self.hub.user, "orgs": [], "auth": {"accessToken": token_info}})

    def _route_telemetry(self) -> None:
        self._send_json({})

    def _route_create_repo(self) -> None:
        self._require_token()
        body = self._json_body()
        namespace = body.get("organization") or self.hub.user
        if namespace != self.hub.user:
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace!r}")
        repo_type = body.get("type") or "model"
        if repo_type not in _URL_PREFIX:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        repo_id = f"{namespace}/{body['name']}"
        private = bool(body.get("private")) or body.get("visibility") == "private"
        existing = self.hub.repos.get((repo_type, repo_id))
        if existing is not None:  # the client reads `url` from the 409 too (exist_ok=True)
            message = f"You already created this {repo_type} repo"
            payload = {"error": message, "url": self.hub.repo_url(existing)}
            self._send_json(payload, status=409, headers={"X-Error-Message": message})
            return
        repo = self.hub.create_repo(repo_id, repo_type=repo_type, private=private)
        self._send_json({"url": self.hub.repo_url(repo), "name": repo_id, "id": uuid.uuid4().hex[:24]})

    def _route_delete_repo(self) -> None:
        self._require_token()
        body = self._json_body()
        repo_id = f"{body.get('organization') or self.hub.user}/{body['name']}"
        self.hub._repo(body.get("type") or "model", repo_id)  # 404 if missing
        del self.hub.repos[(body.get("type") or "model", repo_id)]
        self._send_json({})

    def _route_validate_yaml(self) -> None:
        self._json_body()
        self._send_json({"errors": [], "warnings": []})

    def _route_repo_info(self, kind: str, repo: str, rev: str = "main") -> None:
        info = self._readable_repo(kind, repo)
        commit = self.hub._commit(info, rev)
        siblings = [
            {"rfilename": path, "size": self.hub._blob_path(blob).stat().st_size, "blobId": blob}
            for path, blob in sorted(commit.files.items())
        ]
        self._send_json(
            {
                "_id": hashlib.sha1(f"{info.repo_type}/{info.repo_id}".encode()).hexdigest()[:24],
                "id": info.repo_id,
                "author": info.repo_id.split("/")[0],
                "sha": commit.oid,
                "lastModified": commit.date,
                "createdAt": info.created_at,
                "private": info.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
            }
        )

    def _route_tree(self, kind: str, repo: str, rev: str, path: str = "") -> None:
        commit = self.hub._commit(self._readable_repo(kind, repo), rev)
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        recursive = self.query.get("recursive", "false").lower() in ("1", "true")
        last_commit = {"id": commit.oid, "title": commit.title, "date": commit.date}
        entries: dict[str, dict[str, Any]] = {}
        for file_path, blob in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix) :].split("/")
            # Folders on the way to the file (all of them if recursive, else only the first one).
            for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                folder = prefix + "/".join(parts[:depth])
                oid = hashlib.sha1(f"tree:{commit.oid}:{folder}".encode()).hexdigest()
                entries.setdefault(folder, {"type": "directory", "oid": oid, "path": folder})
            if recursive or len(parts) == 1:
                size = self.hub._blob_path(blob).stat().st_size
                entries[file_path] = {"type": "file", "oid": blob, "size": size, "path": file_path}
        if prefix and not entries:
            raise HubError(404, f"{path} does not exist at {rev}", "EntryNotFound", commit.oid)
        if self.query.get("expand", "false").lower() in ("1", "true"):
            for entry in entries.values():
                entry["lastCommit"] = last_commit
        self._send_json([entries[key] for key in sorted(entries)])

    def _route_preupload(self, kind: str, repo: str, rev: str) -> None:
        _, head = self._writable_repo(kind, repo, rev)
        files = self._json_body().get("files", [])
        answer = [
            # `oid` lets the client skip files that did not change; "regular" means no LFS / Xet upload at all.
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": head.files.get(f["path"])}
            for f in files
        ]
        self._send_json({"files": answer, "commitOid": head.oid})

    def _route_commit(self, kind: str, repo: str, rev: str) -> None:
        info, head = self._writable_repo(kind, repo, rev)
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, head.oid):
            raise HubError(412, f"A commit has happened since {header['parentCommit']}; head is {head.oid}")
        files = dict(head.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            if key == "file":
                content = value["content"]
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                files[value["path"]] = self.hub._store_blob(data)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {path: blob for path, blob in files.items() if not path.startswith(folder)}
            elif key == "lfsFile":
                raise HubError(400, "fake hub: LFS files are not supported (preupload answers 'regular' for all)")
            else:
                raise HubError(400, f"fake hub: unknown commit operation {key!r}")
        commit = self.hub._add_commit(info, rev, header.get("summary") or "commit", files)
        self._send_json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.hub.repo_url(info)}/commit/{commit.oid}",
                "pullRequestUrl": None,
                "hookOutput": "",
            }
        )

    def _route_resolve(self, repo: str, rev: str, path: str, kind: str | None = None) -> None:
        info = self._readable_repo(kind, repo)
        commit = self.hub._commit(info, rev)
        blob = commit.files.get(path)
        if blob is None:  # the commit header lets the client cache "this file does not exist at this commit"
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit.oid)
        data = self.hub._blob_path(blob).read_bytes()
        status, start, end = 200, 0, len(data)
        byte_range = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if byte_range and self.command == "GET":  # resumed download
            status, start = 206, int(byte_range[1])
            end = min(int(byte_range[2]) + 1, len(data)) if byte_range[2] else len(data)
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{blob}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        self._send(status, data[start:end], headers)


# -- client side -------------------------------------------------------------------------------------------------

# Packages whose modules may hold import-time copies of hub settings (`from huggingface_hub.constants import
# HF_HUB_OFFLINE`, diffusers' `HUGGINGFACE_CO_RESOLVE_ENDPOINT`, ...).
_CLIENT_PACKAGES = ("huggingface_hub", "transformers", "diffusers", "peft", "datasets", "accelerate", "contrec_hf")


def _module_copies(name: str, value: Any) -> Iterator[Any]:
    """Modules of the client packages holding `name == value` (read with vars(): lazy modules stay untouched)."""
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name == "huggingface_hub.constants":
            continue
        if module_name.split(".")[0] not in _CLIENT_PACKAGES:
            continue
        namespace = getattr(module, "__dict__", {})
        if name in namespace and type(namespace[name]) is type(value) and namespace[name] == value:
            yield module


@contextlib.contextmanager
def use_fake_hub(hub: FakeHub, *, cache_dir: str | Path | None = None) -> Iterator[FakeHub]:
    """Point huggingface_hub, transformers and diffusers at `hub` (online, token set) and restore them afterwards.

    huggingface_hub reads `HF_ENDPOINT` / `HF_HUB_OFFLINE` when imported, so setting the environment is not enough
    once it is imported: the values are patched in `huggingface_hub.constants`, in the module-level `HfApi` behind
    `huggingface_hub.upload_file` & co, in transformers' cached `HfApi`, and in any module that copied them. The
    environment is set too, for code reading it at call time (peft) and for subprocesses. `cache_dir` (optional)
    gives the download cache a fresh folder, so nothing is served from an earlier test's cache.
    """
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub import hf_api as hf_api_module

    endpoint = hub.endpoint
    new = {"ENDPOINT": endpoint, "HUGGINGFACE_CO_RESOLVE_ENDPOINT": endpoint, "HF_HUB_OFFLINE": False}
    old = {
        "ENDPOINT": constants.ENDPOINT,
        "HUGGINGFACE_CO_RESOLVE_ENDPOINT": constants.ENDPOINT,
        "HF_HUB_OFFLINE": constants.HF_HUB_OFFLINE,
    }
    env = {"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": None, "HF_TOKEN": hub.token}
    if cache_dir is not None:
        new["HF_HUB_CACHE"], old["HF_HUB_CACHE"] = str(cache_dir), constants.HF_HUB_CACHE
        env["HF_HUB_CACHE"] = str(cache_dir)

    saved_env = {key: os.environ.get(key) for key in env}
    patched: list[tuple[Any, str, Any]] = []  # (object, attribute, old value)

    def patch(obj: Any, attribute: str, value: Any) -> None:
        patched.append((obj, attribute, getattr(obj, attribute)))
        setattr(obj, attribute, value)

    try:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for name in ("ENDPOINT", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
            if name in new:
                patch(constants, name, new[name])
        patch(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        patch(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
        patch(hf_api_module.api, "endpoint", endpoint)  # `huggingface_hub.upload_file` & co are bound to it
        transformers_hub = sys.modules.get("transformers.utils.hub")
        if transformers_hub is not None:
            patch(transformers_hub, "_hf_api", None)  # rebuilt lazily with the new endpoint
        for name, value in new.items():
            for module in _module_copies(name, old[name]):
                patch(module, name, value)
        huggingface_hub.close_session()  # start from a fresh HTTP client
        yield hub
    finally:
        huggingface_hub.close_session()  # no pooled connection to a server about to stop
        for obj, attribute, value in reversed(patched):
            setattr(obj, attribute, value)
        # Modules imported meanwhile copied the fake values: put them back to the real ones too.
        for name, value in new.items():
            for module in _module_copies(name, value):
                setattr(module, name, old[name])
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
