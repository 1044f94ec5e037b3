"""Access control on a cluster as KubeRay runs it: Serve on 0.0.0.0 and two gateway replicas, real backends.

Start-up is refused without a key; then every endpoint of every app is checked with no key, a wrong, a
revoked and an expired key and a key of each scope; a key over its rate gets 429 while another key goes on;
with the processors not deployed, the backlog bound answers 503 until they drain it. No key ever shows up in
an answer, a log or a metric."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from selenium.webdriver.common.by import By

from contracts import ApiKeyCreate, ApiKeyInfo, JobStatus
from observatory import backends
from observatory import keys as api_keys
from observatory.settings import Settings
from tests.cluster import API, BIN, CONFIG, DASHBOARD, _env, _head, _run, _stop, wait_ready
from tests.helpers import FAST_RETRIES, actor_pids, final_jobs, scratch, wait_for, workers_arg
from tests.test_web import browser, card, until  # noqa: F401 - browser is a fixture

pytestmark = pytest.mark.e2e

RATE, BURST, BOUND = 5, 10, 40
SCOPES = ("submit", "operate", "read", "admin")
SLEEP = {"type": "sleep", "payload": {"seconds": 0}}
RAY_LOGS = Path("/tmp/ray/session_latest/logs")
PROM_TARGETS = Path("/tmp/ray/prom_metrics_service_discovery.json")

# Every operation of the three apps and what it needs: a scope (any one of a tuple), "public", or "webhook"
# (its own shared secret). An operation missing here fails test_every_operation_is_in_the_matrix.
MATRIX: dict[tuple[str, str], tuple[str, ...] | str] = {
    ("POST", "/api/jobs"): ("submit",),
    ("POST", "/api/jobs/batch"): ("submit",),
    ("POST", "/api/jobs/{job_id}/cancel"): ("operate",),
    ("POST", "/api/dlq/{job_id}/requeue"): ("operate",),
    ("GET", "/api/job-types"): ("submit", "read"),
    ("POST", "/api/keys"): ("admin",),
    ("GET", "/api/keys"): ("admin",),
    ("DELETE", "/api/keys/{key_id}"): ("admin",),
    ("GET", "/api/healthz"): "public",
    ("GET", "/api/readyz"): "public",
    ("GET", "/read/stream"): ("read",),
    ("GET", "/read/find"): ("read",),
    ("GET", "/read/stats"): ("read",),
    ("GET", "/read/jobs"): ("read",),
    ("GET", "/read/jobs/recent"): ("read",),
    ("GET", "/read/jobs/{job_id}"): ("read",),
    ("GET", "/read/dlq"): ("read",),
    ("GET", "/read/jobs/{job_id}/events"): ("read",),
    ("GET", "/read/alerts"): ("read",),
    ("GET", "/read/workers"): ("read",),
    ("POST", "/read/alerts/webhook"): "webhook",
    ("GET", "/read/healthz"): "public",
    ("GET", "/read/readyz"): "public",
    ("GET", "/links"): ("read",),
    ("GET", "/"): "public",
    ("GET", "/static/app.js"): "public",
}
# Answered 503 with the scope while the matrix runs: the workers app is deployed only later in this module.
WITHOUT_WORKERS = {"/read/workers": "workers app unavailable: the Serve application `workers` is not deployed"}
BODIES: dict[str, Any] = {
    "/api/jobs": SLEEP,
    "/api/jobs/batch": {"jobs": [SLEEP]},
    "/api/keys": {"name": "made-by-the-matrix", "scopes": ["read"]},
    "/read/alerts/webhook": {"status": "firing", "alerts": []},
}


def config(with_workers: bool) -> dict[str, Any]:
    """serve_app/config.yaml as the RayService has it (proxy on every interface), with two gateway replicas;
    without the workers app, nothing consumes the jobs."""
    c = yaml.safe_load(CONFIG.read_text())
    c["http_options"]["host"] = "0.0.0.0"
    for app in c["applications"]:
        if app["name"] == "gateway":
            app["deployments"][0].pop("autoscaling_config", None)
            app["deployments"][0]["num_replicas"] = 2
    if not with_workers:
        c["applications"] = [a for a in c["applications"] if a["name"] != "workers"]
    return c


def deploy(c: dict[str, Any], env: dict[str, str], folder: Path) -> None:
    path = folder / f"serve-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(c))
    _run([str(BIN / "serve"), "deploy", str(path), "--address", DASHBOARD], env)


def refusals() -> str:
    """The Serve status messages of the apps and their deployments, joined."""
    apps = httpx.get(f"{DASHBOARD}/api/serve/applications/", timeout=10).json().get("applications", {})
    return "\n".join(
        [a.get("message", "") for a in apps.values()]
        + [d.get("message", "") for a in apps.values() for d in a.get("deployments", {}).values()]
    )


class Cluster:
    def __init__(self, settings: Settings, env: dict[str, str], folder: Path) -> None:
        self.settings, self.env, self.folder = settings, env, folder
        self.keys = backends.key_store(settings)
        self.truth = backends.build(settings)
        self.refusal = ""
        self.admin = ""
        self.secrets: list[str] = []  # every key made here: none may leak anywhere

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "observatory"), *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def key(self, *scopes: str, **update: Any) -> str:
        created, digest = api_keys.issue(ApiKeyCreate(name="test", scopes=list(scopes)))
        info = ApiKeyInfo.model_validate(created.model_dump(exclude={"key"})).model_copy(update=update)
        assert self.keys.add(info, digest)
        self.secrets.append(created.key)
        return created.key


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@pytest.fixture(scope="module")
def cluster(settings, tmp_path_factory) -> Iterator[Cluster]:
    ns = scratch(f"{settings.namespace}_auth")
    s = Settings(OBSERVATORY_NAMESPACE=ns, OBSERVATORY_DATA_DIR=tmp_path_factory.mktemp("auth"))
    extra = {
        "OBSERVATORY_NAMESPACE": ns,
        "OBSERVATORY_DATA_DIR": str(s.data_dir),
        "OBSERVATORY_RATE_LIMIT": str(RATE),
        "OBSERVATORY_RATE_BURST": str(BURST),
        "OBSERVATORY_MAX_UNFINISHED": str(BOUND),
        "OBSERVATORY_API_URL": API,
        **FAST_RETRIES,
    }
    env = _env(extra, ("OBSERVATORY_API_KEY", "OBSERVATORY_ADMIN_KEY", "OBSERVATORY_AUTH"))
    c = Cluster(s, env, tmp_path_factory.mktemp("serve"))
    _head(env, "4")
    try:
        deploy(config(with_workers=False), env, c.folder)
        c.refusal = wait_for(
            lambda: (m := refusals()) and "no API key exists" in m and m, "the apps to refuse to start", 240
        )
        made = c.cli("keys", "create", "--name", "admin", "--scopes", "admin,submit,operate,read")
        assert made.returncode == 0, made.stderr
        c.admin = made.stdout.strip()
        c.secrets.append(c.admin)
        _run([str(BIN / "serve"), "shutdown", "-y", "--address", DASHBOARD], env)
        # The CLI may return while the controller still shuts down (it gives replicas that failed to start 30 s to
        # drain), and a controller that is shutting down ignores a deploy: wait until it is gone.
        wait_for(lambda: not actor_pids("ServeController"), "the Serve controller to exit", 120)
        deploy(config(with_workers=False), env, c.folder)
        wait_ready()
        yield c
    finally:
        _stop(env, hard_stop=True)  # a graceful stop costs ~30 s; test_restart covers both ways
        c.keys.close()
        c.truth.close()


def test_an_exposed_start_without_a_key_is_refused_with_what_to_do(cluster):
    assert "0.0.0.0" in cluster.refusal and "observatory keys create" in cluster.refusal
    assert "OBSERVATORY_AUTH=disabled" in cluster.refusal


def test_every_operation_is_in_the_matrix(cluster):
    found = set()
    for prefix in ("/api", "/read"):
        document = httpx.get(f"{API}{prefix}/openapi.json")
        assert document.status_code == 200, document.text
        for path, ops in document.json()["paths"].items():
            found |= {(method.upper(), prefix + path) for method in ops}
    assert found == {op for op in MATRIX if not op[1].startswith(("/links", "/static")) and op[1] != "/"}


def request(client: httpx.Client, method: str, template: str, ids: dict[str, str], key: str | None) -> httpx.Response:
    path = template.format(**ids)
    if template == "/read/stream":
        with client.stream(method, path, headers=bearer(key)) as r:
            if r.status_code != 200:  # a refusal has a JSON body; an open stream never ends
                r.read()
            return r
    params = {"key": ids["job_id"]} if template == "/read/find" else None
    return client.request(method, path, json=BODIES.get(template), params=params, headers=bearer(key))


def test_the_authorization_matrix(cluster):
    with httpx.Client(base_url=API, timeout=30) as client:
        job = client.post("/api/jobs", json=SLEEP, headers=bearer(cluster.admin))
        assert job.status_code == 202, job.text
        ids = {"job_id": job.json()["job_id"], "key_id": api_keys.key_id(cluster.key("read"))}
        revoked = cluster.key("submit", "operate", "read", "admin")
        gone = client.delete(f"/api/keys/{api_keys.key_id(revoked)}", headers=bearer(cluster.admin))
        assert gone.status_code == 200 and gone.json()["revoked_at"], gone.text
        expired = cluster.key(*SCOPES, expires_at=datetime.now(UTC) - timedelta(minutes=1))
        wrong = api_keys.new_key()
        scoped = {scope: cluster.key(scope) for scope in SCOPES}
        wait_for(  # every replica refuses it (each reads the key table every 2 s): several answers in a row
            lambda: all(
                client.post("/api/jobs/x/cancel", headers=bearer(revoked)).status_code == 401 for _ in range(8)
            ),
            "the revoke to reach every replica",
            30,
        )
        bodies: list[str] = []
        problems: list[str] = []
        for (method, template), need in MATRIX.items():
            callers: dict[str, str | None] = {
                "none": None,
                "garbage": "nonsense",
                "wrong": wrong,
                "revoked": revoked,
                "expired": expired,
            }
            for caller, key in [*callers.items(), *scoped.items()]:
                r = request(client, method, template, ids, key)
                bodies.append(r.text if template != "/read/stream" else "")
                if need == "public":
                    ok = r.status_code == 200
                elif need == "webhook":
                    ok = r.status_code == 401
                elif caller in callers:
                    ok = r.status_code == 401 and r.headers.get("www-authenticate", "").startswith("Bearer")
                    ok = ok and r.json()["error"]["code"] == "unauthorized"
                elif caller in need and template in WITHOUT_WORKERS:
                    ok = r.status_code == 503 and r.json()["error"]["message"] == WITHOUT_WORKERS[template]
                elif caller in need:
                    ok = r.status_code < 500 and r.status_code not in (401, 403)
                else:
                    ok = r.status_code == 403 and "insufficient_scope" in r.headers.get("www-authenticate", "")
                    ok = ok and r.json()["error"]["code"] == "forbidden"
                if not ok:
                    problems.append(f"{method} {template} as {caller}: {r.status_code} {r.text[:200]}")
        assert not problems, "\n".join(problems)
        leaked = [k for k in cluster.secrets if any(k in b for b in bodies)]
        assert not leaked, "a key came back in an answer"


def test_a_key_over_its_rate_gets_429_and_another_key_is_unaffected(cluster):
    fast, other = cluster.key("submit"), cluster.key("submit")
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def fire() -> None:
        with httpx.Client(base_url=API, timeout=30) as c:
            for _ in range(6):
                r = c.post("/api/jobs", json=SLEEP, headers=bearer(fast))
                with lock:
                    answers.append(r)

    began = time.monotonic()
    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    codes = [r.status_code for r in answers]
    accepted = codes.count(202)
    assert set(codes) <= {202, 429}, codes
    # Both replicas draw from one bucket: never more than the burst plus what the rate refilled meanwhile.
    assert BURST <= accepted <= BURST + RATE * elapsed + 1, (accepted, elapsed)
    limited = next(r for r in answers if r.status_code == 429)
    assert limited.json()["error"]["code"] == "rate_limited"
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= 2
    assert httpx.post(f"{API}/api/jobs", json=SLEEP, headers=bearer(other)).status_code == 202
    time.sleep(retry_after)  # the answer's own Retry-After: after it, the key may submit again
    assert httpx.post(f"{API}/api/jobs", json=SLEEP, headers=bearer(fast)).status_code == 202
    apps = httpx.get(f"{DASHBOARD}/api/serve/applications/", timeout=10).json()["applications"]
    replicas = apps["gateway"]["deployments"]["Gateway"]["replicas"]
    assert len([r for r in replicas if r["state"] == "RUNNING"]) == 2


def test_the_backlog_bound_answers_503_until_the_processors_drain_it(cluster):
    accepted: list[str] = []
    refused = None
    with httpx.Client(base_url=API, timeout=30) as client:
        for _ in range(2 * BOUND // 5 + 4):  # a fresh key each time: this is about the bound, not the rate
            r = client.post("/api/jobs/batch", json={"jobs": [SLEEP] * 5}, headers=bearer(cluster.key("submit")))
            if r.status_code == 503:
                refused = r
                break
            assert r.status_code == 202, r.text
            accepted += [a["job_id"] for a in r.json()["accepted"]]
        assert refused is not None, f"{len(accepted)} jobs accepted and no 503"
        assert "OBSERVATORY_MAX_UNFINISHED" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        waiting = cluster.truth.jobs.unfinished()
        assert BOUND - 5 < waiting <= BOUND + 5, waiting  # each replica counts once a second
        for job_id in accepted:  # nothing accepted before is lost
            assert cluster.truth.jobs.get(uuid.UUID(job_id)).status is JobStatus.PENDING

        deploy(config(with_workers=True), cluster.env, cluster.folder)
        key = cluster.key("submit")
        wait_for(
            lambda: client.post("/api/jobs", json=SLEEP, headers=bearer(key)).status_code == 202,
            "submissions to be accepted again once the processors drain the backlog",
            240,
        )
        reader = {"Authorization": f"Bearer {cluster.admin}"}
        client.headers.update(reader)
        jobs = wait_for(lambda: final_jobs(client, accepted), "every accepted job to finish", 240)
        assert {j["status"] for j in jobs.values()} == {"COMPLETED"}
        workers = client.get("/read/workers", headers=bearer(cluster.key("read")))  # deployed now: it answers
        assert workers.status_code == 200, workers.text
        assert workers.json()["workers"]["desired"] == workers_arg("processors")


def test_the_cli_uses_the_key_from_the_environment(cluster):
    env = {**cluster.env, "OBSERVATORY_API_KEY": cluster.key("read")}
    ok = subprocess.run([str(BIN / "observatory"), "status"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "jobs" in ok.stdout, ok.stderr
    refused = cluster.cli("status")  # no key
    assert refused.returncode == 1 and "needs an API key" in refused.stderr and "Traceback" not in refused.stderr
    listed = cluster.cli("keys", "list")
    assert listed.returncode == 0 and api_keys.key_id(cluster.admin) in listed.stdout
    assert all(k not in listed.stdout for k in cluster.secrets)
    kid = api_keys.key_id(env["OBSERVATORY_API_KEY"])
    assert cluster.cli("keys", "revoke", kid).returncode == 0
    assert cluster.cli("keys", "revoke", "0" * 12).returncode == 1
    bad = cluster.cli("keys", "create", "--name", "x", "--scopes", "everything")
    assert bad.returncode == 2 and "--scopes" in bad.stderr


def test_no_key_appears_in_logs_or_metrics(cluster):
    texts = {
        str(p): p.read_text(errors="replace")
        for p in RAY_LOGS.rglob("*")
        if p.is_file() and p.suffix in (".log", ".out", ".err")
    }
    targets = json.loads(PROM_TARGETS.read_text()) if PROM_TARGETS.exists() else []
    for group in targets:
        for target in group["targets"]:
            try:
                texts[target] = httpx.get(f"http://{target}/metrics", timeout=10).text
            except httpx.HTTPError:
                pass
    assert any("observatory_jobs_refused" in t for t in texts.values()), "no metrics were read"
    for key in cluster.secrets:
        secret = key[17:]  # after obs_<id>_ (the secret itself may hold underscores)
        found = {
            where: t[max(0, t.find(secret) - 300) : t.find(secret) + 100] for where, t in texts.items() if secret in t
        }
        assert not found, f"key {api_keys.key_id(key)} leaked: {found}"


def test_the_web_dashboard_asks_for_a_key_and_keeps_it_for_the_session(cluster, browser):  # noqa: F811

    browser.get("about:blank")
    browser.get(f"{API}/#/")
    form = until(lambda: (f := browser.find_element(By.ID, "keyform")).is_displayed() and f, "the key form")
    assert "needs an API key" in browser.find_element(By.ID, "key-message").text
    reader = cluster.key("read")
    browser.find_element(By.ID, "api-key").send_keys(reader)
    form.find_element(By.CSS_SELECTOR, "button").click()
    total = httpx.get(f"{API}/read/stats", headers=bearer(reader)).json()["total_jobs"]
    until(lambda: card(browser, "total_jobs") == str(total), "the overview, live, with the key")
    assert not browser.find_element(By.ID, "keyform").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('observatory.apiKey')") == reader
    assert browser.execute_script("return localStorage.length") == 0  # only the session keeps it
