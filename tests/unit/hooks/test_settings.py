"""Settings resolution: precedence argument > connection > environment > default; every validation error."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_neptune.exceptions import NeptuneSettingsError
from airflow_provider_neptune.hooks.settings import (
    DEFAULTS,
    NeptuneSettings,
    decode_token,
    encode_token,
    is_loopback_host,
    resolve_settings,
    url_origin,
)

SECRET = "s3cr3t-api-key-value"
LOCAL_TOKEN = encode_token({"api_address": "http://127.0.0.1:5555", "api_key": SECRET})
REMOTE_TOKEN = encode_token({"api_address": "https://neptune.example.com", "api_key": SECRET})


@dataclass
class Conn:
    password: str | None = None
    host: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return self.extra


def resolve(conn: Conn | None = None, env: dict[str, str] | None = None, **arguments: Any) -> NeptuneSettings:
    return resolve_settings("neptune_default", conn, arguments, env or {})


def test_defaults_apply_when_nothing_else_is_set() -> None:
    s = resolve(Conn(password=LOCAL_TOKEN, extra={"project": "ws/proj"}))
    assert s.mode == DEFAULTS["mode"] == "async"
    assert s.rate_limit_per_second == 20.0
    assert s.rate_limit_storage == "memory"
    assert s.retry_count == 5
    assert s.retry_backoff == 0.5
    assert s.request_timeout == 60.0
    assert s.logging_level is None
    assert s.api_address == "http://127.0.0.1:5555"
    assert s.project == "ws/proj"
    assert s.workspace == "ws"


def test_argument_beats_connection_beats_environment() -> None:
    env = {
        "NEPTUNE_API_TOKEN": REMOTE_TOKEN,
        "NEPTUNE_PROJECT": "env/proj",
        "NEPTUNE_MODE": "offline",
        "NEPTUNE_CONNECTION_RETRY_COUNT": "7",
        "NEPTUNE_CONNECTION_BACKOFF": "2.5",
        "NEPTUNE_LOGGING_LEVEL": "warning",
        "NEPTUNE_REQUEST_TIMEOUT": "11",
    }
    conn = Conn(
        password=LOCAL_TOKEN,
        extra={"project": "conn/proj", "mode": "sync", "retry_count": "3", "rate_limit_per_second": "4"},
    )
    s = resolve(conn, env, project="arg/proj", retry_count=1)
    assert s.project == "arg/proj"  # argument
    assert s.retry_count == 1  # argument
    assert s.mode == "sync"  # connection
    assert s.rate_limit_per_second == 4.0  # connection (string from the UI)
    assert s.api_address == "http://127.0.0.1:5555"  # connection password beats NEPTUNE_API_TOKEN
    assert s.retry_backoff == 2.5  # environment
    assert s.logging_level == "WARNING"  # environment, normalised
    assert s.request_timeout == 11.0  # environment


def test_environment_used_without_connection() -> None:
    env = {"NEPTUNE_API_TOKEN": REMOTE_TOKEN, "NEPTUNE_PROJECT": "env/proj", "NEPTUNE_MODE": "read-only"}
    s = resolve(None, env)
    assert (s.project, s.mode, s.api_address) == ("env/proj", "read-only", "https://neptune.example.com")


def test_blank_values_fall_through_to_the_next_source() -> None:
    conn = Conn(password="  ", extra={"project": "", "mode": None})
    s = resolve(conn, {"NEPTUNE_API_TOKEN": LOCAL_TOKEN, "NEPTUNE_PROJECT": "env/p"}, mode="")
    assert s.project == "env/p"
    assert s.mode == "async"
    assert s.api_address == "http://127.0.0.1:5555"


def test_prefixed_extra_keys_of_older_forms_are_read() -> None:
    s = resolve(Conn(password=LOCAL_TOKEN, extra={"extra__neptune__project": "old/form"}))
    assert s.project == "old/form"


def test_repr_and_str_never_show_the_token() -> None:
    s = resolve(Conn(password=LOCAL_TOKEN, extra={"project": "ws/p"}))
    for text in (repr(s), str(s)):
        assert LOCAL_TOKEN not in text
        assert SECRET not in text
    assert s.api_token == LOCAL_TOKEN


def test_settings_are_frozen() -> None:
    s = resolve(Conn(password=LOCAL_TOKEN, extra={"project": "ws/p"}))
    with pytest.raises(AttributeError):
        s.project = "other/p"  # type: ignore[misc]


def test_connection_host_overrides_token_address() -> None:
    s = resolve(Conn(password=REMOTE_TOKEN, host="http://localhost:9000", extra={"project": "ws/p"}))
    assert s.api_address == "http://localhost:9000"
    assert decode_token(s.api_token or "")["api_key"] == SECRET


def test_budget_key_is_per_server_and_workspace() -> None:
    a = resolve(Conn(password=LOCAL_TOKEN, extra={"project": "ws/p1"}))
    b = resolve(Conn(password=LOCAL_TOKEN, extra={"project": "ws/p2"}))
    c = resolve(Conn(password=LOCAL_TOKEN, extra={"project": "other/p1"}))
    d = resolve(Conn(password=REMOTE_TOKEN, extra={"project": "ws/p1"}))
    assert a.budget_key == b.budget_key
    assert len({a.budget_key, c.budget_key, d.budget_key}) == 3


def test_origins_and_loopback_detection() -> None:
    assert url_origin("neptune.example.com") == "https://neptune.example.com:443"
    assert url_origin("http://127.0.0.1:5555/api") == "http://127.0.0.1:5555"
    assert url_origin("http://[::1]:80") == "http://[::1]:80"
    assert all(is_loopback_host(h) for h in ("localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]"))
    assert not any(is_loopback_host(h) for h in ("10.0.0.1", "example.com", "128.0.0.1"))


def test_offline_and_debug_need_no_token_or_project() -> None:
    s = resolve(None, {}, mode="offline")
    assert s.api_token is None
    assert not s.needs_server
    assert resolve(None, {}, mode="debug").project is None


# ------------------------------------------------------------------------- validation errors


def _error(
    conn: Conn | None = None, env: dict[str, str] | None = None, **arguments: Any
) -> NeptuneSettingsError:
    with pytest.raises(NeptuneSettingsError) as info:
        resolve(conn, env, **arguments)
    error = info.value
    assert LOCAL_TOKEN not in str(error)
    assert SECRET not in str(error)
    return error


GOOD = {"project": "ws/p"}


@pytest.mark.parametrize(
    ("extra", "field", "bad"),
    [
        ({"mode": "turbo"}, "mode", "turbo"),
        ({"project": "no-slash"}, "project", "no-slash"),
        ({"project": "a/b/c"}, "project", "a/b/c"),
        ({"rate_limit_per_second": "fast"}, "rate_limit_per_second", "fast"),
        ({"rate_limit_per_second": -1}, "rate_limit_per_second", -1),
        ({"rate_limit_per_second": "inf"}, "rate_limit_per_second", "inf"),
        ({"rate_limit_per_second": True}, "rate_limit_per_second", True),
        ({"rate_limit_storage": "relative/path.sqlite"}, "rate_limit_storage", "relative/path.sqlite"),
        ({"rate_limit_storage": "ftp://host/x"}, "rate_limit_storage", "ftp://host/x"),
        ({"rate_limit_storage": "redis://"}, "rate_limit_storage", "redis://"),
        ({"rate_limit_storage": "redis://host:notaport/0"}, "rate_limit_storage", "redis://host:notaport/0"),
        ({"rate_limit_storage": "/tmp/dir/"}, "rate_limit_storage", "/tmp/dir/"),
        ({"rate_limit_storage": 5}, "rate_limit_storage", 5),
        ({"retry_count": "2.5"}, "retry_count", "2.5"),
        ({"retry_count": 99}, "retry_count", 99),
        ({"retry_count": -1}, "retry_count", -1),
        ({"retry_backoff": 0}, "retry_backoff", 0),
        ({"retry_backoff": 600}, "retry_backoff", 600),
        ({"request_timeout": 0}, "request_timeout", 0),
        ({"request_timeout": "soon"}, "request_timeout", "soon"),
        ({"logging_level": "LOUD"}, "logging_level", "LOUD"),
    ],
)
def test_each_bad_extra_value_is_named(extra: dict[str, Any], field: str, bad: Any) -> None:
    error = _error(Conn(password=LOCAL_TOKEN, extra={**GOOD, **extra}))
    assert error.field.startswith(field)
    assert "connection 'neptune_default' extra" in error.field
    assert error.value == bad
    assert field in str(error)
    assert repr(bad) in str(error)


def test_bad_environment_value_names_the_variable() -> None:
    error = _error(Conn(password=LOCAL_TOKEN, extra=GOOD), {"NEPTUNE_CONNECTION_RETRY_COUNT": "many"})
    assert "NEPTUNE_CONNECTION_RETRY_COUNT" in str(error)
    assert "'many'" in str(error)


def test_bad_argument_is_named_as_argument() -> None:
    error = _error(Conn(password=LOCAL_TOKEN, extra=GOOD), request_timeout=-3)
    assert error.field == "request_timeout (argument)"


def test_missing_token_for_a_server_mode() -> None:
    error = _error(Conn(extra=GOOD))
    assert error.field == "api_token"
    assert "NEPTUNE_API_TOKEN" in str(error)


def test_missing_project_for_a_server_mode() -> None:
    error = _error(Conn(password=LOCAL_TOKEN))
    assert error.field == "project"


@pytest.mark.parametrize("token", ["not base64 at all!", encode_token({"no": "address"}), "bm90IGpzb24="])
def test_malformed_token_is_rejected_without_echo(token: str) -> None:
    error = _error(Conn(password=token, extra=GOOD))
    assert error.field == "api_token"
    assert token not in str(error)


def test_plain_http_outside_loopback_is_refused() -> None:
    token = encode_token({"api_address": "http://neptune.example.com", "api_key": SECRET})
    error = _error(Conn(password=token, extra=GOOD))
    assert "loopback" in str(error)
    assert error.value == "http://neptune.example.com"


def test_plain_http_api_url_outside_loopback_is_refused() -> None:
    token = encode_token(
        {"api_address": "https://ok.example.com", "api_url": "http://10.1.2.3", "api_key": SECRET}
    )
    error = _error(Conn(password=token, extra=GOOD))
    assert error.field == "api_token api_url"


def test_host_override_is_checked_too() -> None:
    error = _error(Conn(password=LOCAL_TOKEN, host="http://192.168.1.5:8080", extra=GOOD))
    assert error.field.startswith("host")


def test_non_http_scheme_is_refused() -> None:
    token = encode_token({"api_address": "ftp://127.0.0.1", "api_key": SECRET})
    assert "http(s)" in str(_error(Conn(password=token, extra=GOOD)))


def test_extra_must_be_an_object() -> None:
    conn = Conn(password=LOCAL_TOKEN)
    conn.extra = json.loads("[1, 2]")  # type: ignore[assignment]
    assert _error(conn).field.startswith("extra")


def test_valid_storages_are_normalised() -> None:
    for value, expected in [
        ("MEMORY", "memory"),
        ("/var/tmp/budget.sqlite", "/var/tmp/budget.sqlite"),
        ("file:///var/tmp/b.sqlite", "/var/tmp/b.sqlite"),
        ("redis://:pw@redis:6379/0", "redis://:pw@redis:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ]:
        s = resolve(Conn(password=LOCAL_TOKEN, extra={**GOOD, "rate_limit_storage": value}))
        assert s.rate_limit_storage == expected


# ------------------------------------------------------------------------- through the hook


def test_hook_reads_a_real_airflow_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    conn = {
        "conn_type": "neptune",
        "password": LOCAL_TOKEN,
        "extra": {"project": "conn/proj", "mode": "sync", "rate_limit_per_second": 3},
    }
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("NEPTUNE_PROJECT", "env/ignored")
    hook = NeptuneHook(retry_count=2)
    s = hook.settings
    assert (s.project, s.mode, s.rate_limit_per_second, s.retry_count) == ("conn/proj", "sync", 3.0, 2)
    assert hook.settings is s  # resolved once
    assert NeptuneHook(project="arg/proj").settings.project == "arg/proj"


def test_hook_registers_the_token_with_the_secrets_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk._shared.secrets_masker.secrets_masker import redact

    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    token = encode_token({"api_address": "http://127.0.0.1:5556", "api_key": "mask-me-" + SECRET})
    _ = NeptuneHook(api_token=token, project="ws/p").settings
    assert token not in str(redact(f"token={token}"))


def test_hook_with_a_missing_named_connection_fails_clearly() -> None:
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    hook = NeptuneHook("no_such_neptune_conn")
    with pytest.raises(NeptuneSettingsError, match="no_such_neptune_conn"):
        _ = hook.settings
    ok, message = hook.test_connection()
    assert not ok
    assert "connection not found" in message


def test_hook_without_default_connection_uses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    monkeypatch.delenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", raising=False)
    monkeypatch.setenv("NEPTUNE_API_TOKEN", REMOTE_TOKEN)
    monkeypatch.setenv("NEPTUNE_PROJECT", "env/proj")
    s = NeptuneHook().settings
    assert (s.project, s.api_address) == ("env/proj", "https://neptune.example.com")


def test_ui_field_behaviour_matches_provider_metadata() -> None:
    from airflow_provider_neptune import get_provider_info
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    (conn_type,) = get_provider_info()["connection-types"]
    assert conn_type["hook-class-name"].endswith(NeptuneHook.__name__)
    assert conn_type["connection-type"] == NeptuneHook.conn_type == "neptune"
    assert NeptuneHook.get_ui_field_behaviour() == conn_type["ui-field-behaviour"]
    widgets = NeptuneHook.get_connection_form_widgets()
    assert widgets == {} or set(widgets) == set(conn_type["conn-fields"])
    # Every extra key the settings read is a declared connection field, and vice versa.
    from airflow_provider_neptune.hooks.settings import EXTRA_KEYS

    assert set(EXTRA_KEYS) == set(conn_type["conn-fields"])
    assert (NeptuneHook.default_conn_name, NeptuneHook.conn_name_attr) == (
        "neptune_default",
        "neptune_conn_id",
    )


# ------------------------------------------------------------------------- address rule (issue 13)

#: Addresses that would send the token somewhere else, or in clear, or that parsers read two ways.
UNSAFE_ADDRESSES = [
    "http://evil.example:80\\@127.0.0.1",  # urlsplit sees 127.0.0.1, urllib3 connects to evil.example
    "http://evil.example\\@127.0.0.1:5080/api",
    "http://127.0.0.1.evil.example",
    "http://0x7f.1",  # inet_aton forms: resolvers map them to 127.0.0.1, ipaddress does not
    "http://2130706433",
    "http://127.1",
    "http://localhost.",  # a resolver may ask DNS for it
    "http://api.localhost",
    "HTTP://evil.example",
    "Http://evil.example:80/api",
    "http://127.0.0.1:5080 ",
    " http://127.0.0.1:5080",
    "http://127.0.0.1:5080\n",
    "http://127.0.0.1\x00.evil.example",
    "http://127.0.0.1%2F@evil.example",
    "http://127.0.0.1%2Fevil.example",
    "http://user:pw@127.0.0.1:5080",
    "http://127.0.0.1:5080@evil.example",
    "http://127.0.0.1:99999",
    "http://127.0.0.1:0",
    "http://127.0.0.1:-1",
    "http://127.0.0.1#@evil.example",
    "http://[::ffff:127.0.0.1]",
    "https://évil.example",
]


@pytest.mark.parametrize("address", UNSAFE_ADDRESSES)
def test_unsafe_token_address_is_refused(address: str) -> None:
    token = encode_token({"api_address": address, "api_key": SECRET})
    error = _error(Conn(password=token, extra=GOOD))
    assert error.field == "api_token api_address"
    assert SECRET not in str(error)


# The connection form's host is stripped of surrounding whitespace before use (and before the check).
@pytest.mark.parametrize("address", [a for a in UNSAFE_ADDRESSES if a == a.strip()])
def test_unsafe_connection_host_is_refused(address: str) -> None:
    error = _error(Conn(password=REMOTE_TOKEN, host=address, extra=GOOD))
    assert error.field == "host (connection 'neptune_default')"


@pytest.mark.parametrize(
    ("address", "origin"),
    [
        ("http://127.0.0.1:5080", "http://127.0.0.1:5080"),
        ("HTTP://127.0.0.1:5080/", "http://127.0.0.1:5080"),
        ("http://[::1]:5080", "http://[::1]:5080"),
        ("http://[::1]", "http://[::1]:80"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("https://neptune.example.com", "https://neptune.example.com:443"),
        ("neptune.example.com:8443", "https://neptune.example.com:8443"),
        ("https://neptune.example.com/base", "https://neptune.example.com:443"),
    ],
)
def test_safe_addresses_are_accepted_with_the_origin_the_transport_uses(address: str, origin: str) -> None:
    token = encode_token({"api_address": address, "api_key": SECRET})
    settings = resolve(Conn(password=token, extra=GOOD))
    assert settings.origins == (origin,)


def test_user_info_in_a_refused_address_is_not_echoed() -> None:
    token = encode_token({"api_address": "https://admin:Hunter2Pw@neptune.example.com", "api_key": SECRET})
    error = _error(Conn(password=token, extra=GOOD))
    assert "Hunter2Pw" not in str(error)
    assert "Hunter2Pw" not in repr(error.value)
    assert "user-info" in str(error)


# ------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    "storage",
    [
        "redis://:S3cretPW@host:99999/0",
        "redis://user:S3cretPW@host:notaport/0",
        "rediss://:S3cretPW@/0",
        "redis://:6379/0?password=S3cretPW&db=1",
        "ftp://user:S3cretPW@host/x",
    ],
)
def test_storage_errors_never_echo_the_password(storage: str) -> None:
    error = _error(Conn(password=LOCAL_TOKEN, extra={**GOOD, "rate_limit_storage": storage}))
    assert error.field.startswith("rate_limit_storage")
    assert "S3cretPW" not in str(error)
    assert "S3cretPW" not in repr(error.value)


def test_redact_url_masks_every_url_in_a_text() -> None:
    from airflow_provider_neptune.hooks.settings import redact_url

    text = (
        "budget redis://:pw1@r1:6379/0 and rediss://u:p@w2@r2/1, "
        "https://h/x?api_key=k3&x=1 and unix:///s.sock?password=pw4, plain https://ok.example/path"
    )
    masked = redact_url(text)
    for secret in ("pw1", "p@w2", "w2@", "k3", "pw4"):
        assert secret not in masked
    assert "redis://***@r1:6379/0" in masked
    assert "rediss://***@r2/1" in masked
    assert "https://ok.example/path" in masked
    assert "x=1" in masked
