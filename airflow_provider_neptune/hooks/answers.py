"""Answers the transport keeps so that a task does not ask the server the same thing twice.

* The client config (``GET .../clients/config``): every handle the client opens fetches it, and the
  hook does for a run's URL; within ``CONFIG_REUSE_SECONDS`` a second fetch with the same URL and
  token is answered from the first (no request). :func:`fresh_config` forces a real request (the
  server checks of the hook measure the round trip and the server's clock with it).
* The API description documents (``swagger.json``, five per process that opens a handle): kept on disk
  for ``SPEC_REUSE_SECONDS`` in a directory only this user can write (:func:`spec_dir`), so the next
  task on this host does not download them again.
* While :func:`keep_answers` is active in a thread, the 200 answers to that thread's GET requests
  whose path ends with a given suffix are kept for the caller (the hook keeps the run's attribute
  list the client reads when it opens a run: it holds each series' last step).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

#: Path ending of the client-config document.
CONFIG_SUFFIX = "/clients/config"
#: How long a client-config answer is reused in this process, seconds.
CONFIG_REUSE_SECONDS = 300.0
_TOKEN_HEADER = "X-Neptune-Api-Token"
#: Path ending of the API description documents.
SPEC_SUFFIX = "/swagger.json"
#: How long a downloaded API description is reused on this host, seconds.
SPEC_REUSE_SECONDS = 600.0

_LOCAL = threading.local()
_CONFIGS: dict[tuple[str, str], tuple[float, int, dict[str, str], bytes]] = {}
_CONFIGS_LOCK = threading.Lock()


def _path(request: requests.PreparedRequest) -> str:
    return urlsplit(request.url or "").path.rstrip("/")


def _config_key(request: requests.PreparedRequest) -> tuple[str, str] | None:
    """(URL, token digest) of a client-config GET, else None."""
    if request.method != "GET" or not _path(request).endswith(CONFIG_SUFFIX):
        return None
    token = request.headers.get(_TOKEN_HEADER) or ""
    raw = token.encode("latin-1") if isinstance(token, str) else token
    return request.url or "", hashlib.sha256(raw).hexdigest()


@contextmanager
def fresh_config() -> Iterator[None]:
    """Within this block (this thread), client-config requests go to the server (and refresh the copy)."""
    previous = getattr(_LOCAL, "fresh", False)
    _LOCAL.fresh = True
    try:
        yield
    finally:
        _LOCAL.fresh = previous


def spec_dir() -> Path | None:
    """This user's directory of API descriptions (created 0700); None when it is not safely ours."""
    getuid = getattr(os, "getuid", None)
    if getuid is None:
        return None
    path = Path(tempfile.gettempdir()) / f"airflow-provider-neptune-{getuid()}" / "specs"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for part in (path.parent, path):
            info = part.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != getuid() or info.st_mode & 0o022:
                return None
    except OSError:
        return None
    return path


def _spec_file(request: requests.PreparedRequest) -> Path | None:
    if request.method != "GET" or not _path(request).endswith(SPEC_SUFFIX):
        return None
    folder = spec_dir()
    digest = hashlib.sha256((request.url or "").encode()).hexdigest()
    return folder / f"{digest}.json" if folder is not None else None


def _reused_spec(request: requests.PreparedRequest) -> requests.Response | None:
    path = _spec_file(request)
    if path is None:
        return None
    try:
        if time.time() - path.stat().st_mtime > SPEC_REUSE_SECONDS:
            return None
        content = path.read_bytes()
    except OSError:
        return None
    return _answer(request, 200, {"Content-Type": "application/json"}, content)


def _keep_spec(request: requests.PreparedRequest, content: bytes) -> None:
    path = _spec_file(request)
    if path is None or not content:
        return
    staging = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        staging.write_bytes(content)
        os.replace(staging, path)  # atomic: a reader never sees half a document
    except OSError:
        staging.unlink(missing_ok=True)


def reused(request: requests.PreparedRequest) -> requests.Response | None:
    """A copy of a recent client-config answer or API description for this request, or None (then it
    is sent)."""
    spec = _reused_spec(request)
    if spec is not None:
        return spec
    key = _config_key(request)
    if key is None or getattr(_LOCAL, "fresh", False):
        return None
    with _CONFIGS_LOCK:
        kept = _CONFIGS.get(key)
    if kept is None or time.monotonic() - kept[0] > CONFIG_REUSE_SECONDS:
        return None
    _, status, headers, content = kept
    return _answer(request, status, headers, content)


def _answer(
    request: requests.PreparedRequest, status: int, headers: dict[str, str], content: bytes
) -> requests.Response:
    """A response as ``requests`` builds it, from a kept answer."""
    response = requests.Response()
    response.status_code = status
    response.reason = "OK"
    response.headers = CaseInsensitiveDict(headers)
    response._content = content
    response.url = request.url or ""
    response.request = request
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    return response


def remember(request: requests.PreparedRequest, response: requests.Response) -> None:
    """Keep what later requests may reuse: a 200 client config, and answers a thread asked to keep."""
    if response.status_code != 200:
        return
    _keep_spec(request, response.content)
    key = _config_key(request)
    if key is not None:
        with _CONFIGS_LOCK:
            _CONFIGS[key] = (time.monotonic(), 200, dict(response.headers), response.content)
    kept: list[tuple[str, bytes]] | None = getattr(_LOCAL, "kept", None)
    suffix: str | None = getattr(_LOCAL, "suffix", None)
    if kept is not None and suffix and request.method == "GET" and _path(request).endswith(suffix):
        kept.append((request.url or "", response.content))


@contextmanager
def keep_answers(suffix: str) -> Iterator[list[tuple[str, bytes]]]:
    """Within this block (this thread), keep (URL, body) of 200 answers to GETs ending with ``suffix``."""
    previous = getattr(_LOCAL, "kept", None), getattr(_LOCAL, "suffix", None)
    kept: list[tuple[str, bytes]] = []
    _LOCAL.kept, _LOCAL.suffix = kept, suffix
    try:
        yield kept
    finally:
        _LOCAL.kept, _LOCAL.suffix = previous


def forget() -> None:
    """Drop every kept client config and API description (tests)."""
    with _CONFIGS_LOCK:
        _CONFIGS.clear()
    folder = spec_dir()
    for path in folder.glob("*.json") if folder is not None else []:
        path.unlink(missing_ok=True)
