"""Command line: `python -m airflow_provider_neptune.emulator --host H --port P ...`.

Binds the socket first (so --port 0 yields the real port), starts uvicorn, and once the server
accepts connections prints NEPTUNE_API_TOKEN=, NEPTUNE_PROJECT= and NEPTUNE_EMULATOR_URL= lines
(flushed). SIGINT/SIGTERM stop it gracefully with exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import uvicorn

from airflow_provider_neptune.emulator.app import DEFAULT_MAX_BODY_BYTES, EmulatorApp, EmulatorConfig
from airflow_provider_neptune.emulator.errors import DataDirectoryError

DEFAULT_PROJECT = "airflow/sandbox"
MIB = 1024 * 1024


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser (every flag is documented in --help)."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_neptune.emulator",
        description=(
            "A Neptune-compatible server for development and tests: the unmodified neptune 1.x client "
            "works against it in sync, async and offline (neptune sync) modes. Prints "
            "NEPTUNE_API_TOKEN=..., NEPTUNE_PROJECT=... and NEPTUNE_EMULATOR_URL=... once it accepts "
            "connections, and serves until SIGINT/SIGTERM (exit status 0). Control endpoints "
            "(GET /_emulator/stats, GET|POST /_emulator/faults, POST /_emulator/reset_stats, "
            "GET|POST /_emulator/projects, GET /_emulator/health) need the API token as "
            "X-Neptune-Api-Token or Authorization: Bearer, unless --open."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default: 0)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder for the SQLite database and blobs; state (runs, files, API token) survives restarts. "
        "Default: a temporary folder deleted on exit",
    )
    parser.add_argument(
        "--project",
        action="append",
        dest="projects",
        metavar="WORKSPACE/NAME",
        help="project to create (repeatable); the first is printed as NEPTUNE_PROJECT "
        f"(default: {DEFAULT_PROJECT})",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="RPS",
        help="request budget shared by every client of this server (one workspace budget): at most RPS "
        "/api/ requests (Swagger documents excepted) in any sliding 1-second window; over it the server "
        "answers 429 with Retry-After, and rejected requests use no budget (default: unlimited)",
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share (0..1) of /api/ requests that fail with 500, 503 or a dropped connection, decided "
        "before processing so they change nothing (default: 0)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the fault RNG, for reproducible faults"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="delay every budgeted /api/ answer by this many milliseconds, to mimic a remote server "
        "(default: 0)",
    )
    parser.add_argument(
        "--state-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="a run is 'running' (sys/state) while its client keeps the signal websocket open or pinged "
        "within this many seconds; the client pings every 10 s (default: 20)",
    )
    parser.add_argument(
        "--multipart-threshold",
        type=int,
        default=5 * MIB,
        metavar="BYTES",
        help="files larger than this are uploaded by the client in parts (default: 5 MiB)",
    )
    parser.add_argument(
        "--multipart-chunk",
        type=int,
        default=5 * MIB,
        metavar="BYTES",
        help="minimum part size the client uses for multipart uploads (default: 5 MiB)",
    )
    parser.add_argument(
        "--public-url",
        default=None,
        metavar="URL",
        help="URL clients reach the server at, embedded in the printed API token (default: "
        "http://<host>:<port>, with 127.0.0.1 for a wildcard host). Links the server returns (client "
        "config, token refresh, downloads) always use the address each request came to",
    )
    parser.add_argument(
        "--ssl-certfile",
        type=Path,
        default=None,
        metavar="PEM",
        help="serve HTTPS with this certificate (with --ssl-keyfile); clients of a self-signed one need "
        "NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE=1. Default: plain HTTP",
    )
    parser.add_argument(
        "--ssl-keyfile", type=Path, default=None, metavar="PEM", help="private key for --ssl-certfile"
    )
    parser.add_argument("--owner", default="emulator", help="username shown as sys/owner (default: emulator)")
    parser.add_argument(
        "--api-key",
        default=None,
        help="fixed API key inside the token, so a token can be prepared before the server starts "
        "(e.g. in docker-compose). Default: a random key, kept in --data-dir across restarts",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the API token to this file (mode 0600) once the server accepts connections",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log level of the server on stderr (default: warning)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request on stderr")
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="BYTES",
        help="largest JSON request body; a larger one is answered 413 without being read further. "
        "File uploads are streamed to disk and not bounded by it. The neptune client sends at most "
        "NEPTUNE_MAX_BATCH_SIZE_BYTES (100 MiB) of operations per request "
        f"(default: {DEFAULT_MAX_BODY_BYTES // MIB} MiB)",
    )
    parser.add_argument(
        "--open",
        action="store_true",
        help="serve the /_emulator/* control endpoints (stats, faults, projects) without the API token; "
        "for local use only, never on a shared network (default: they need the token)",
    )
    return parser


class _Server(uvicorn.Server):
    """uvicorn server whose signals we handle ourselves (uvicorn re-raises them, which breaks exit 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave signal handling to _serve (which stops the server and lets main return 0)."""
        yield


def _display_url(host: str, port: int, scheme: str = "http") -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{scheme}://{shown}:{port}"


async def _serve(server: _Server, sock: socket.socket, lines: list[str], token_file: Path | None) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            return
        await asyncio.sleep(0.01)
    if token_file is not None:
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.touch(mode=0o600)
        token_file.write_text(lines[0].partition("=")[2] + "\n")
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()
    await task


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGINT/SIGTERM; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not 0.0 <= args.fault_rate <= 1.0:
        print("--fault-rate must be between 0 and 1", file=sys.stderr)
        return 2
    if args.latency_ms < 0:
        print("--latency-ms must not be negative", file=sys.stderr)
        return 2
    if args.max_body_bytes < 1024:
        print(f"--max-body-bytes must be at least 1024, got {args.max_body_bytes}", file=sys.stderr)
        return 2
    projects = args.projects or [DEFAULT_PROJECT]
    bad = [p for p in projects if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", p)]
    if bad:
        print(f"--project must look like workspace/name, got {bad[0]!r}", file=sys.stderr)
        return 2
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        print("--ssl-certfile and --ssl-keyfile go together", file=sys.stderr)
        return 2
    scheme = "https" if args.ssl_certfile else "http"
    temp_dir = None
    data_dir = args.data_dir
    if data_dir is None:
        temp_dir = tempfile.mkdtemp(prefix="neptune-emulator-")
        data_dir = Path(temp_dir)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY: without it every response (headers, then body)
    # waits ~40 ms for the client's delayed ACK, capping a client at ~22 requests per second.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        try:
            sock.bind((args.host, args.port))
        except OSError as exc:
            print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
        sock.listen(2048)
        port = sock.getsockname()[1]
        public_url = (args.public_url or _display_url(args.host, port, scheme)).rstrip("/")
        try:
            app = EmulatorApp(
                EmulatorConfig(
                    data_dir=data_dir,
                    projects=projects,
                    rate_limit=args.rate_limit,
                    fault_rate=args.fault_rate,
                    seed=args.seed,
                    latency_ms=args.latency_ms,
                    state_timeout=args.state_timeout,
                    multipart_threshold=args.multipart_threshold,
                    multipart_chunk=args.multipart_chunk,
                    owner=args.owner,
                    api_key=args.api_key,
                    max_body_bytes=args.max_body_bytes,
                    open_control=args.open,
                )
            )
        except DataDirectoryError as exc:
            print(f"--data-dir: {exc}", file=sys.stderr)
            return 1
        config = uvicorn.Config(
            app,
            log_level=args.log_level,
            access_log=args.access_log,
            lifespan="off",
            timeout_graceful_shutdown=3,
            # Longer than the client's idle gaps (10 s pings, 5 s flushes), so a pooled connection is
            # rarely closed by the server just as the client reuses it.
            timeout_keep_alive=75,
            ws_ping_interval=None,
            ssl_certfile=str(args.ssl_certfile) if args.ssl_certfile else None,
            ssl_keyfile=str(args.ssl_keyfile) if args.ssl_keyfile else None,
        )
        server = _Server(config)
        lines = [
            f"NEPTUNE_API_TOKEN={app.api_token(public_url)}",
            f"NEPTUNE_PROJECT={projects[0]}",
            f"NEPTUNE_EMULATOR_URL={public_url}",
        ]
        asyncio.run(_serve(server, sock, lines, args.token_file))
        app.storage.close()
    finally:
        sock.close()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
