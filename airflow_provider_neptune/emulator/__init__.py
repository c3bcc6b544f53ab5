"""A Neptune-compatible server for development and tests (the unmodified neptune 1.x client talks to it).

Run it with `python -m airflow_provider_neptune.emulator` (see --help), from Python with
`NeptuneEmulator`, or in pytest with the `neptune_emulator` fixtures. What a user should know:

- Serves the backend and leaderboard Swagger documents, client config (multipart upload enabled,
  threshold --multipart-threshold), the API-token -> OAuth exchange and refresh (at
  /auth/realms/neptune/...), projects, runs, models and model versions, every field type,
  float/string/image series, files, file sets (downloaded as a zip with `/` and folder entries,
  like the real server's), artifacts (artifact API version 2: track_files of local paths,
  fetch_hash, fetch_files_list, download), the runs table (NQL), trash, and a signal websocket per
  open run. `neptune sync` of offline data works.
- sys/state is "running" while a client holds the run (its signal websocket is open, or it pinged
  within --state-timeout seconds) and "idle" once the client stops (closes the websocket) or goes
  silent. The client pings every 10 s.
- A series point whose step is not greater than the last stored step is rejected with the real
  server's operation error; points without a step get last step + 1. Operations of one request are
  applied in order in one transaction.
- Budget and faults apply to /api/* except the Swagger documents: --rate-limit R allows R requests
  in any sliding 1-second window (429 + Retry-After otherwise, not consuming budget); --fault-rate P
  fails that share with 500, 503 or a dropped connection (seeded by --seed) before any processing.
- Control (never throttled or faulted): GET /_emulator/stats, GET|POST /_emulator/faults,
  POST /_emulator/reset_stats, GET|POST /_emulator/projects, GET /_emulator/health. They need the
  API token (X-Neptune-Api-Token, or Authorization: Bearer) unless the server runs with --open;
  `NeptuneEmulator` sends it.
- Web view (read-only, GET only, no token; see README "The web view"): / (projects),
  /<workspace>/<project> (runs table: q=NQL, tag, state, cols, sort, dir, page, size),
  /<workspace>/<project>/e/<SYS-ID> (the run page run.get_url() returns: charts, fields,
  checkpoints, files), /<workspace>/<project>/compare?run=ID&run=ID&metric=PATH, /_web/static/*
  (the page script) and /_web/download/<run uuid>.
- Hardened input: malformed or non-finite JSON, invalid Unicode, too deep nesting, wrong types and
  out-of-range integers answer 400 in Neptune's error shape; JSON bodies over --max-body-bytes
  answer 413; uploads stream to disk.
  Values that cannot be stored safely (a datetime outside years 1..9999, a float series whose sum
  would overflow a double) are refused per operation, so every stored run stays readable.
- Data at scale: searches and the web runs table run in SQLite (search.py), so a route's cost does
  not grow with the runs stored. The data directory records its schema version in `meta`; an older
  directory is migrated forward on open, a newer one is refused.
"""

from airflow_provider_neptune.emulator.process import EmulatorStartError, NeptuneEmulator

__all__ = ["EmulatorStartError", "NeptuneEmulator"]
