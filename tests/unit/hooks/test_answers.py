"""What the transport reuses instead of asking again: the client config and the API descriptions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from airflow_provider_neptune.hooks import answers

BASE = "http://127.0.0.1:5997"


def _get(path: str, token: str = "t1") -> requests.PreparedRequest:
    return requests.Request("GET", BASE + path, headers={"X-Neptune-Api-Token": token}).prepare()


def _ok(body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = body
    return response


@pytest.fixture(autouse=True)
def _own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(answers.tempfile, "gettempdir", lambda: str(tmp_path))
    answers.forget()


def test_the_client_config_is_reused_for_the_same_url_and_token_unless_fresh_is_asked() -> None:
    config = "/api/backend/v1/clients/config?alpha=true"
    assert answers.reused(_get(config)) is None
    answers.remember(_get(config), _ok(b'{"apiUrl": "x"}'))
    again = answers.reused(_get(config))
    assert again is not None
    assert (again.status_code, again.json()) == (200, {"apiUrl": "x"})
    assert answers.reused(_get(config, token="other")) is None  # another connection's token
    with answers.fresh_config():
        assert answers.reused(_get(config)) is None  # the hook's server checks measure a real answer


def test_api_descriptions_are_reused_from_disk_by_a_later_process_but_not_when_old() -> None:
    spec = "/api/leaderboard/swagger.json"
    answers.remember(_get(spec), _ok(b'{"swagger": "2.0"}'))
    with answers._CONFIGS_LOCK:
        answers._CONFIGS.clear()  # a new process keeps nothing in memory
    again = answers.reused(_get(spec))
    assert again is not None
    assert again.json() == {"swagger": "2.0"}
    (kept,) = (answers.spec_dir() or Path("/nonexistent")).glob("*.json")
    old = kept.stat().st_mtime - answers.SPEC_REUSE_SECONDS - 1
    os.utime(kept, (old, old))
    assert answers.reused(_get(spec)) is None


def test_a_spec_directory_others_can_write_is_not_used(tmp_path: Path) -> None:
    folder = answers.spec_dir()
    assert folder is not None
    folder.chmod(0o777)
    try:
        assert answers.spec_dir() is None
        answers.remember(_get("/api/backend/swagger.json"), _ok(b"{}"))
        assert answers.reused(_get("/api/backend/swagger.json")) is None
    finally:
        folder.chmod(0o700)


def test_only_the_asked_answers_are_kept_in_a_block() -> None:
    with answers.keep_answers("/attributes") as kept:
        answers.remember(_get("/api/leaderboard/v1/attributes?experimentId=r"), _ok(b'{"id": "r"}'))
        answers.remember(_get("/api/leaderboard/v1/experiments?experimentId=r"), _ok(b"{}"))
    answers.remember(_get("/api/leaderboard/v1/attributes?experimentId=s"), _ok(b'{"id": "s"}'))
    assert kept == [(BASE + "/api/leaderboard/v1/attributes?experimentId=r", b'{"id": "r"}')]
