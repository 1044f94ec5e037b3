"""The `observatory` command line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
import yaml

from contracts import JobStatus
from kuberay.cli import app as cluster_app
from observatory import backends, views
from observatory.errors import ObservatoryError
from observatory.keys_cli import app as keys_app
from observatory.migrate_cli import migrate
from observatory.serve_ingress import ray_env
from observatory.settings import MIN_RETENTION_S, Settings

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "serve_app" / "config.yaml"
SERVICES_SCRIPT = ROOT / "scripts" / "services.sh"
START_TIMEOUT_S = 300
# `serve run`, with Ctrl-C handling forced on: a child started from a non-interactive shell in the
# background inherits SIGINT as ignored, and then `serve run` would never shut Ray down.
SERVE_RUN = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from ray.serve.scripts import cli; sys.argv[0] = 'serve'; cli()"
)
STOP_TIMEOUT_S = 60

app = typer.Typer(help="The Distributed Task Observatory.", no_args_is_help=True, add_completion=False)
services_app = typer.Typer(help="Local RabbitMQ, PostgreSQL, Redis and FerretDB on 127.0.0.1.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(cluster_app, name="cluster")
app.add_typer(keys_app, name="keys")
app.command("migrate")(migrate)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _config_with(processors: int | None) -> tuple[Path, int]:
    config = yaml.safe_load(CONFIG.read_text())
    if processors is not None:
        for application in config["applications"]:
            if application["name"] == "workers":
                application["args"]["processors"] = processors
    path = Path(tempfile.mkdtemp(prefix="observatory-")) / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, int(config["http_options"]["port"])


def _wait_ready(api: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    step = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"the Serve app exited with code {proc.returncode}; see {log}")
        try:
            ready = [httpx.get(f"{api}{p}", timeout=2).status_code == 200 for p in ("/api/readyz", "/read/readyz")]
            if all(ready):
                return
            now = "waiting for the backends (readyz)"
        except httpx.HTTPError:
            now = "starting Ray and the Serve applications"
        if now != step:
            typer.echo(f"  … {now}")
            step = now
        time.sleep(1)
    fail(f"not ready after {START_TIMEOUT_S}s; see {log}")


@app.command()
def up(
    processors: Annotated[int | None, typer.Option(min=1, max=256, help="Processor actors (default: config)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where logs and local data go")] = None,
) -> None:
    """Start Ray, the Serve apps and the actors from serve_app/config.yaml; Ctrl-C stops everything."""
    settings = Settings() if data_dir is None else Settings(OBSERVATORY_DATA_DIR=data_dir)
    try:
        backends.build(settings).close()
    except Exception as e:  # noqa: BLE001 - any configuration problem is reported as one line
        fail(str(e))
    config, port = _config_with(processors)
    if not _port_free(port):
        fail(f"port {port} on 127.0.0.1 is in use: stop whatever listens there (another `observatory up`?)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = settings.data_dir / "serve.log"
    env = ray_env(OBSERVATORY_DATA_DIR=str(settings.data_dir))  # loopback only; HTTP via HAProxy
    typer.echo("backends: " + ", ".join(f"{k}={v}" for k, v in backends.describe(settings).items()))
    typer.echo(f"starting the observatory (log: {log})")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE_RUN, "run", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            typer.echo("\nstopping …")
            proc.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    api = f"http://127.0.0.1:{port}"
    _wait_ready(api, proc, log)
    typer.echo(
        f"ready.\n  gateway:    {api}/api   (docs {api}/api/docs)\n  read model: {api}/read  "
        f"(docs {api}/read/docs)\n  Ray dashboard: http://127.0.0.1:8265\nPress Ctrl-C to stop."
    )
    while proc.poll() is None:
        time.sleep(0.5)
        if stopping:
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    typer.echo("stopped.")


def _client(settings: Settings) -> httpx.Client:
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return httpx.Client(
        base_url=settings.api_url, timeout=30, headers={"Authorization": f"Bearer {key}"} if key else None
    )


def _call(method: str, path: str, **kwargs: Any) -> Any:
    settings = Settings()
    try:
        with _client(settings) as c:
            r = c.request(method, path, **kwargs)
    except httpx.HTTPError as e:
        fail(
            f"cannot reach the observatory at {settings.api_url} ({e.__class__.__name__}); start it with "
            "`observatory up` or set OBSERVATORY_API_URL"
        )
    if r.status_code >= 400:
        try:
            err = r.json()["error"]
            details = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in err.get("details", []))
            fail(f"{err['message']}" + (f" ({details})" if details else ""))
        except (ValueError, KeyError, TypeError):
            fail(f"HTTP {r.status_code}: {r.text[:200]}")
    return r.json()


@app.command()
def submit(
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="A job type; see `observatory types`")],
    payload: Annotated[str, typer.Option(help="The payload as a JSON object")] = "{}",
    count: Annotated[int, typer.Option(min=1, max=1000, help="Submit this many copies as one batch")] = 1,
) -> None:
    """Submit a job (or a batch of identical jobs) and print the job ids."""
    try:
        body = json.loads(payload)
    except json.JSONDecodeError as e:
        fail(f"--payload is not valid JSON: {e}", code=2)
    if not isinstance(body, dict):
        fail("--payload must be a JSON object", code=2)
    job = {"type": job_type, "payload": body}
    accepted = (
        [_call("POST", "/api/jobs", json=job)]
        if count == 1
        else _call("POST", "/api/jobs/batch", json={"jobs": [job] * count})["accepted"]
    )
    for a in accepted:
        typer.echo(a["job_id"])


@app.command()
def types() -> None:
    """List the job types and their payload fields."""
    for t in _call("GET", "/api/job-types"):
        fields = ", ".join(t["payload_schema"].get("properties", {}))
        typer.echo(f"{t['type']:<16} {t['description']}  [{fields}]")


@app.command()
def status() -> None:
    """Every status count, per type, and the active alerts."""
    for line in views.status_lines(_call("GET", "/read/stats"), _call("GET", "/read/alerts")["alerts"]):
        typer.echo(line)


@app.command()
def job(
    job_id: Annotated[str, typer.Argument(help="A job id")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw job document")] = False,
) -> None:
    """One job: its fields, result or error, attempts and event timeline."""
    j = _call("GET", f"/read/jobs/{job_id}")
    if as_json:
        typer.echo(json.dumps(j, indent=2))
        return
    for line in views.job_lines(j, _call("GET", f"/read/jobs/{job_id}/events")):
        typer.echo(line)


STATUS_NAMES = [s.value for s in JobStatus]


@app.command()
def jobs(
    status: Annotated[str | None, typer.Option(help=f"One of {', '.join(STATUS_NAMES)}")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="A job type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    cursor: Annotated[str | None, typer.Option(help="The `more:` cursor of the previous page")] = None,
) -> None:
    """The newest jobs, optionally of one status and type."""
    if status is not None and status.upper() not in STATUS_NAMES:
        fail(f"--status must be one of {', '.join(STATUS_NAMES)}", code=2)
    params = {"limit": limit, "status": status.upper() if status else None, "type": job_type, "cursor": cursor}
    page = _call("GET", "/read/jobs", params={k: v for k, v in params.items() if v is not None})
    for line in views.jobs_lines(page):
        typer.echo(line)


@app.command()
def dlq(
    action: Annotated[str | None, typer.Argument(help="`requeue` to requeue the job JOB_ID")] = None,
    job_id: Annotated[str | None, typer.Argument(help="The job to requeue")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    cursor: Annotated[str | None, typer.Option(help="The `more:` cursor of the previous page")] = None,
) -> None:
    """List the dead letters, or `observatory dlq requeue JOB_ID`."""
    if action is None:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        for line in views.dlq_lines(_call("GET", "/read/dlq", params=params)):
            typer.echo(line)
        return
    if action != "requeue" or not job_id:
        fail("usage: observatory dlq [requeue JOB_ID]", code=2)
    j = _call("POST", f"/api/dlq/{job_id}/requeue")
    typer.echo(f"requeued {j['id']}: {j['status']}")


@app.command()
def replay(
    verify: Annotated[bool, typer.Option(help="Then compare the rebuilt stats with the job store")] = False,
) -> None:
    """Rebuild the stats counters from the event store (safe while the observatory runs)."""
    from observatory.errors import BackendUnavailable
    from observatory.replay import RebuildRunning
    from observatory.replay import replay as run_replay

    settings = Settings()
    b = backends.build(settings)
    try:
        b.setup()
        began = time.monotonic()

        def progress(n: int) -> None:
            typer.echo(f"\r  {n} events ({n / max(time.monotonic() - began, 1e-6):.0f}/s)", nl=False, err=True)

        try:  # the read model's keeper may be rebuilding right now: let it finish first
            events, done = run_replay(b.events, b.counters, b.jobs, progress, wait_s=600)
        except RebuildRunning as e:
            fail(f"{e} for 10 minutes; try again later")
        typer.echo("", err=True)
        if not done:
            fail(
                "the counters were wiped or rebuilt by someone else, or retention removed jobs, meanwhile: "
                "run `observatory replay` again"
            )
        typer.echo(f"rebuilt the stats from {events} events in {time.monotonic() - began:.1f}s")
        if verify:
            differences = views.stats_differences(b.counters.stats(), b.jobs.counts())
            for line in differences:
                typer.echo(line)
            if differences:
                fail(f"{len(differences)} difference(s) between the rebuilt stats and the job store")
            typer.echo("the rebuilt stats equal the job store")
    except BackendUnavailable as e:
        fail(str(e))
    finally:
        b.close()


@app.command()
def backup(path: Annotated[Path, typer.Argument(help="A new (or empty) directory for the copy")]) -> None:
    """Copy the embedded data dir, one instant across its files, while the observatory runs (writers pause)."""
    from observatory import backup as backups

    try:
        done = backups.backup(Settings(), path)
    except backups.BackupError as e:
        fail(str(e), e.code)
    for f in done.manifest.files:
        typer.echo(f"  {f.name:<17} {f.bytes:>12,} bytes  " + ", ".join(f"{t} {n}" for t, n in f.rows.items()))
    for note in done.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"backed up to {path} (writers paused {done.paused_s * 1000:.0f} ms)")


@app.command()
def restore(
    path: Annotated[Path, typer.Argument(help="A directory written by `observatory backup`")],
    force: Annotated[bool, typer.Option(help="Replace a data dir that holds data")] = False,
) -> None:
    """Replace the embedded data dir with a backup, after checking it; the observatory must be stopped."""
    from observatory import backup as backups

    settings = Settings()
    try:
        manifest, notes = backups.restore(settings, path, force)
    except backups.BackupError as e:
        fail(str(e), e.code)
    for f in manifest.files:
        typer.echo(f"  {f.name:<17} " + ", ".join(f"{t} {n}" for t, n in f.rows.items()))
    for note in notes:
        typer.echo(f"note: {note}")
    typer.echo(f"restored the backup of {manifest.created_at:%Y-%m-%d %H:%M:%S} UTC into {settings.embedded_dir}")


DURATION = re.compile(r"([0-9]{1,5}(?:\.[0-9]{1,6})?)([dhms])")  # at most 99999 days: a date stays in range
SECONDS_PER = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta | None:
    """`7d`, `12h`, `30m`, `90s` (a number and one unit); None when it is not one."""
    match = DURATION.fullmatch(text.strip())
    return timedelta(seconds=float(match[1]) * SECONDS_PER[match[2]]) if match else None


@app.command()
def purge(
    older_than: Annotated[str, typer.Option(help="How long ago the jobs finished: 7d, 12h, 30m or 90s")],
    dry_run: Annotated[bool, typer.Option(help="Only count what would be removed")] = False,
    dead_letters: Annotated[bool, typer.Option(help="Also remove dead-lettered jobs and their dead letters")] = False,
) -> None:
    """Remove COMPLETED, FAILED and CANCELLED jobs that finished before then, their attempts and their events
    (the stats keep counting them); the workers app does the same by itself (OBSERVATORY_RETENTION_DAYS)."""
    import sqlalchemy.exc

    from observatory.errors import BackendUnavailable
    from observatory.retention import purge_once
    from observatory.schema import migrate_all

    age = parse_duration(older_than)
    if age is None:
        fail("--older-than: expected a duration like 7d or 12h", code=2)
    if age.total_seconds() < MIN_RETENTION_S:
        fail("--older-than: at least 1h (an event redelivered after its job was removed would count twice)", code=2)
    settings = Settings()
    if dry_run:
        try:
            used = {"postgres", "sqlite_jobs", "sqlite_events", "sqlite_counters"}  # the stores a purge reads
            behind = [s.where for s in migrate_all(settings, check=True) if s.pending and s.target in used]
        except sqlalchemy.exc.DBAPIError as e:
            fail(f"cannot reach a database: {e.orig}")
        if behind:
            fail(f"{', '.join(behind)}: schema behind this release (a dry run changes nothing): `observatory migrate`")
    b = backends.build(settings)
    cutoff = datetime.now(UTC) - age
    try:
        if not dry_run:
            for store in (b.jobs, b.events, b.counters):
                store.setup()
        removed = purge_once(b, cutoff, dead_letters=dead_letters, dry_run=dry_run)
    except BackendUnavailable as e:
        fail(str(e))
    finally:
        b.close()
    kinds = "finished and dead-lettered" if dead_letters else "finished"
    typer.echo(
        f"{'would remove' if dry_run else 'removed'} {removed.jobs} {kinds} jobs and {removed.events} events "
        f"(finished before {cutoff:%Y-%m-%d %H:%M:%S} UTC)"
    )
    if removed.paused:
        fail("stopped early: the stats counters are being rebuilt; run `observatory purge` again when that is done")


@app.command()
def tui() -> None:
    """The terminal dashboard (Textual); `textual serve "observatory tui"` shows it in a browser."""
    from tui.app import run

    settings = Settings()
    run(settings.api_url, settings.api_key.get_secret_value() if settings.api_key else None)


def _services(*args: str) -> None:
    if not SERVICES_SCRIPT.exists():
        fail(f"{SERVICES_SCRIPT} not found: `observatory services` needs a source checkout")
    raise typer.Exit(subprocess.call(["bash", str(SERVICES_SCRIPT), *args]))


@services_app.command("up")
def services_up(
    observability: Annotated[bool, typer.Option(help="Also start Prometheus and Alertmanager")] = False,
) -> None:
    """Install (if missing) and start the services; idempotent."""
    _services("up", *(["--observability"] if observability else []))


@services_app.command("down")
def services_down() -> None:
    """Stop the services."""
    _services("down")


@services_app.command("status")
def services_status() -> None:
    """Say which services are up."""
    _services("status")


@services_app.command("env")
def services_env() -> None:
    """Print export lines for AMQP_URL, POSTGRES_DSN, MONGO_URL and REDIS_URL."""
    _services("env")


def main() -> None:
    try:
        app()
    except ObservatoryError as e:  # e.g. a schema newer than this release, met by a command's setup
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        sys.exit(1)


if __name__ == "__main__":
    main()
