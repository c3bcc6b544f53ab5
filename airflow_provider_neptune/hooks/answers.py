"""Answers the transport keeps so that a task does not ask the server the same thing twice.

* The client config (``GET .../clients/config``): every handle the client opens fetches it, and the
  hook does for a run's URL; within ``CONFIG_REUSE_SECONDS`` a second fetch with the same URL and
  token is answered from the first (no request). :func:`fresh_config` forces a real request (the
  server checks of the hook measure the round trip and the server's clock with it).
* While :func:`keep_answers` is active in a thread, the 200 answers to that thread's GET requests
  whose path ends with a given suffix are kept for the caller (the hook keeps the run's attribute
  list the client reads when it opens a run: it holds each series' last step).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

#: Path ending of the client-config document.
CONFIG_SUFFIX = "/clients/config"
#: How long a client-config answer is reused in this process, seconds.
CONFIG_REUSE_SECONDS = 300.0
_TOKEN_HEADER = "X-Neptune-Api-Token"

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


def reused(request: requests.PreparedRequest) -> requests.Response | None:
    """A copy of a recent client-config answer for this request, or None (then it is sent)."""
    key = _config_key(request)
    if key is None or getattr(_LOCAL, "fresh", False):
        return None
    with _CONFIGS_LOCK:
        kept = _CONFIGS.get(key)
    if kept is None or time.monotonic() - kept[0] > CONFIG_REUSE_SECONDS:
        return None
    _, status, headers, content = kept
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
    """Drop every kept client config (tests)."""
    with _CONFIGS_LOCK:
        _CONFIGS.clear()
