// The observatory's web dashboard: a small hash-routed page on the gateway (/api) and the read model (/read).
// Live data comes from one stream on /read/stream (read with fetch, so it carries the API key); pages re-read what they show when a snapshot arrives.
"use strict";

const STATUSES = ["PENDING", "RUNNING", "RETRYING", "COMPLETED", "FAILED", "DEAD_LETTERED", "CANCELLED"];
const ACTIVE = new Set(["PENDING", "RUNNING", "RETRYING"]);
const main = document.getElementById("main");
const banner = document.getElementById("banner");
const state = { snapshot: null, types: null, page: null, stream: null, down: false, unavailable: "" };
const FINAL = new Set(["COMPLETED", "FAILED", "DEAD_LETTERED", "CANCELLED"]);

// ------------------------------------------------------------------ helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function call(method, path, body) {
  let r;
  try {
    r = await fetch(path, {
      method,
      headers: { ...authHeaders(), ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    setDown(true);
    throw new ApiError(0, { error: { message: "the API is unreachable" } });
  }
  setDown(false);
  const data = await r.json().catch(() => null);
  if (r.status === 401 || r.status === 403) askForKey(data && data.error ? data.error.message : "");
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

const get = (path) => call("GET", path);
const post = (path, body) => call("POST", path, body);

function showBanner() {
  const text = state.down ? "The API is unreachable — retrying by itself." : state.unavailable ? `A backend is unavailable: ${state.unavailable}` : "";
  banner.hidden = !text;
  banner.textContent = text;
}

function setDown(down) {
  if (state.down === down) return;
  state.down = down;
  showBanner();
}

function statusBadge(s) {
  return h("span", { class: `status s-${s}` }, s);
}

function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function ago(iso) {
  if (!iso) return "—";
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

function duration(a, b) {
  if (!a || !b) return "";
  const ms = new Date(b) - new Date(a);
  return ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 60000).toFixed(1)} min`;
}

function jobLink(id) {
  return h("a", { href: `#/jobs/${id}` }, h("code", {}, id.slice(0, 8)));
}

function jobsTable(jobs, { compact = false } = {}) {
  if (!jobs.length) return h("p", { class: "muted" }, "No jobs.");
  return h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "job"), h("th", {}, "type"), h("th", {}, "status"),
      h("th", { class: "num" }, "attempts"), h("th", { class: compact ? "hide-narrow" : "" }, "created"))),
    h("tbody", {}, jobs.map((j) => h("tr", { "data-job": j.id },
      h("td", {}, jobLink(j.id)), h("td", {}, j.type), h("td", {}, statusBadge(j.status)),
      h("td", { class: "num" }, `${j.attempts}/${j.max_attempts}`),
      h("td", { class: compact ? "hide-narrow" : "", title: fmtTime(j.created_at) }, ago(j.created_at)))))));
}

function notice(text, error = false) {
  return h("p", { class: error ? "notice error" : "notice", role: error ? "alert" : "status" }, text);
}

// ------------------------------------------------------------------ live stream

const KEY = "observatory.apiKey";  // kept only for this browser session (sessionStorage)
let lost = null;
let retry = null;  // the next connect(), while one is due

function reconnect(ms) {
  clearTimeout(retry);
  retry = setTimeout(connect, ms);
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function askForKey(message) {
  const form = document.getElementById("keyform");
  document.getElementById("key-message").textContent = message || "This observatory needs an API key.";
  form.hidden = false;
  document.getElementById("api-key").focus();
}

function useKey(e) {
  e.preventDefault();
  const input = document.getElementById("api-key");
  if (!input.value.trim()) return;
  sessionStorage.setItem(KEY, input.value.trim());
  input.value = "";
  document.getElementById("keyform").hidden = true;
  connect();  // in place of the stream that was refused
  route();
  links();
}

function streamLost() {
  clearTimeout(lost);
  lost = setTimeout(() => setDown(true), 5000);  // only a stream that stays down is an outage worth a banner
}

function dispatch(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const field = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (event === "snapshot") {
    clearTimeout(lost);
    setDown(false);
    state.unavailable = "";
    showBanner();
    const previous = state.snapshot;
    state.snapshot = JSON.parse(data.join("\n"));
    if (state.page && state.page.onSnapshot) state.page.onSnapshot(state.snapshot, previous);
  } else if (event === "unavailable") {
    state.unavailable = data.join("\n");
    showBanner();
  }
}

// The live stream, read with fetch (an EventSource cannot send the API key). Each stream ends after 50 s
// and is opened again at once; a failed one is retried every 2 s.
async function connect() {
  clearTimeout(retry);
  if (state.stream) state.stream.abort();  // one stream per page, whoever asks
  const ctl = new AbortController();
  state.stream = ctl;
  let r;
  try {
    r = await fetch("/read/stream", { headers: { Accept: "text/event-stream", ...authHeaders() }, signal: ctl.signal, cache: "no-store" });
  } catch {
    if (state.stream === ctl) { streamLost(); reconnect(2000); }
    return;
  }
  if (r.status === 401 || r.status === 403) {
    clearTimeout(lost);
    setDown(false);  // the API answers: it wants a key, which the form asks for
    const body = await r.json().catch(() => null);
    askForKey(body && body.error ? body.error.message : "");
    return;  // connect() runs again once a key is entered
  }
  if (!r.ok || !r.body) {
    streamLost();
    reconnect(2000);
    return;
  }
  clearTimeout(lost);
  setDown(false);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let events = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      for (let i = buffer.indexOf("\n\n"); i >= 0; i = buffer.indexOf("\n\n")) {
        events += 1;
        dispatch(buffer.slice(0, i));
        buffer = buffer.slice(i + 2);
      }
    }
  } catch { /* the connection dropped */ }
  // A stream that ran its course reconnects at once; one that ended before any event waits the 2 s its
  // `retry:` asks for, so a server that closes at once is not asked five times a second.
  if (state.stream === ctl) { streamLost(); reconnect(events > 1 ? 200 : 2000); }
}

function countsChanged(snap, previous) {
  return !previous || JSON.stringify(snap.stats) !== JSON.stringify(previous.stats);
}

// ------------------------------------------------------------------ overview

function chart(points, key, { unit, bad = false, max }) {
  const W = 600, H = 160, L = 40, R = 8, T = 8, B = 22;
  const el = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" });
  const now = Date.now(), t0 = now - 15 * 60 * 1000;
  const values = points.map((p) => p[key]);
  const top = max !== undefined ? max : Math.max(1, ...values) * 1.15;
  const x = (t) => L + ((t - t0) / (now - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / top) * (H - T - B);
  el.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  el.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (const frac of [0, 0.5, 1]) {
    const v = top * frac;
    el.append(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, unit === "%" ? `${Math.round(v * 100)}%` : v.toFixed(v < 10 ? 1 : 0)));
  }
  for (let m = 15; m >= 0; m -= 5) {
    const t = now - m * 60 * 1000;
    const label = new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    el.append(svg("text", { x: x(t), y: H - 6, "text-anchor": "middle" }, label));
  }
  const visible = points.filter((p) => new Date(p.at).getTime() >= t0);
  if (visible.length) {
    const d = visible.map((p, i) => `${i ? "L" : "M"}${x(new Date(p.at).getTime()).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    el.append(svg("path", { class: bad ? "line bad" : "line", d }));
  }
  const last = visible.length ? visible[visible.length - 1][key] : null;
  const said = last === null ? "no data yet" : unit === "%" ? `${Math.round(last * 100)}%` : `${last} ${unit}`;
  el.setAttribute("aria-label", `last 15 minutes, latest ${said}`);
  return el;
}

function overviewPage() {
  const cards = h("div", { class: "cards", id: "cards" });
  const throughput = h("div", { id: "throughput" });
  const failures = h("div", { id: "failures" });
  const alerts = h("div", { id: "alerts" });
  const queues = h("div", { id: "queues" });
  const recent = h("div", { id: "recent" });
  main.replaceChildren(
    h("h2", {}, "Overview"), cards,
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h3", {}, "Throughput (jobs finished per second, last 15 min)"), throughput),
      h("section", { class: "panel" }, h("h3", {}, "Failure rate (last 15 min)"), failures)),
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h3", {}, "Active alerts"), alerts),
      h("section", { class: "panel" }, h("h3", {}, "Queues"), queues)),
    h("section", { class: "panel", style: "margin-top:12px" }, h("h3", {}, "Newest jobs"), recent));

  let shown = "";
  function render(snap) {
    const key = JSON.stringify([snap.stats, snap.alerts, snap.queues, snap.series, snap.recent]);
    if (key === shown) return; // nothing changed: leave the page (and the keyboard focus) alone
    shown = key;
    const s = snap.stats;
    cards.replaceChildren(
      h("div", { class: "card", "data-stat": "total_jobs" }, h("div", { class: "n" }, s.total_jobs), h("div", { class: "l" }, "total")),
      ...STATUSES.map((st) => h("div", { class: "card", "data-stat": st.toLowerCase() },
        h("div", { class: `n s-${st}` }, s[st.toLowerCase()]), h("div", { class: "l" }, st.replace("_", " ")))));
    throughput.replaceChildren(chart(snap.series, "finished_per_s", { unit: "jobs/s" }));
    failures.replaceChildren(chart(snap.series, "failure_rate", { unit: "%", bad: true, max: 1 }));
    alerts.replaceChildren(snap.alerts.length
      ? h("ul", { class: "alerts" }, snap.alerts.map((a) => h("li", { class: `sev-${a.severity}`, "data-alert": a.name },
          h("span", { class: `sev sev-${a.severity}` }, a.severity), h("strong", {}, a.name), " — ", a.summary,
          h("div", { class: "muted" }, `since ${ago(a.since)} · ${a.source}`, a.runbook ? ` · runbook: ${a.runbook}` : ""))))
      : h("p", { class: "muted" }, "No active alerts."));
    queues.replaceChildren(snap.queues.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "queue"), h("th", { class: "num" }, "ready"), h("th", { class: "num" }, "consumers"))),
          h("tbody", {}, snap.queues.map((q) => h("tr", {}, h("td", {}, q.name), h("td", { class: "num" }, q.depth), h("td", { class: "num" }, q.consumers)))))
      : h("p", { class: "muted" }, "The broker cannot be asked right now."));
    recent.replaceChildren(jobsTable(snap.recent, { compact: true }));
  }

  if (state.snapshot) render(state.snapshot);
  else {  // the same cards, empty, until the stream answers: nothing below moves when the numbers arrive
    cards.replaceChildren(...["total", ...STATUSES].map((st) => h("div", { class: "card", "aria-busy": "true" },
      h("div", { class: "n muted" }, "—"), h("div", { class: "l" }, st.replace("_", " ")))));
    for (const panel of [alerts, queues, recent]) panel.replaceChildren(h("p", { class: "muted" }, "Waiting for the live stream…"));
  }
  return { onSnapshot: render };
}

// ------------------------------------------------------------------ jobs

async function jobTypes() {
  if (!state.types) state.types = await get("/api/job-types");
  return state.types;
}

function jobsPage(params) {
  const status = params.get("status") || "";
  const type = params.get("type") || "";
  const cursor = params.get("cursor") || "";
  const find = params.get("find") || "";
  const list = h("div", { id: "job-list" }, h("p", { class: "muted" }, "Loading…"));
  const typeSelect = h("select", { id: "f-type", name: "type" }, h("option", { value: "" }, "any type"));
  const form = h("form", { class: "filters", onsubmit: (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
      location.hash = `#/jobs?${q}`;
    } },
    h("div", {}, h("label", { for: "f-status" }, "Status"),
      h("select", { id: "f-status", name: "status" }, h("option", { value: "" }, "any status"),
        STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)))),
    h("div", {}, h("label", { for: "f-type" }, "Type"), typeSelect),
    h("div", {}, h("label", { for: "f-find" }, "Job id, correlation id or idempotency key"),
      h("input", { id: "f-find", name: "find", value: find, size: 36 })),
    h("button", { type: "submit" }, "Show"));
  main.replaceChildren(h("h2", {}, "Jobs"), form, list);
  jobTypes().then((types) => typeSelect.append(...types.map((t) => h("option", { value: t.type, selected: t.type === type }, t.type)))).catch(() => {});

  async function load() {
    try {
      if (find) {
        const jobs = await get(`/read/find?key=${encodeURIComponent(find)}`);
        list.replaceChildren(jobsTable(jobs));
        return;
      }
      const q = new URLSearchParams({ limit: "50" });
      if (status) q.set("status", status);
      if (type) q.set("type", type);
      if (cursor) q.set("cursor", cursor);
      const page = await get(`/read/jobs?${q}`);
      const nav = h("div", { class: "row-actions" });
      if (cursor) {
        const first = new URLSearchParams(q); first.delete("cursor"); first.delete("limit");
        nav.append(h("a", { href: `#/jobs?${first}` }, "First page"));
      }
      if (page.next_cursor) {
        const next = new URLSearchParams(q); next.set("cursor", page.next_cursor); next.delete("limit");
        nav.append(h("a", { href: `#/jobs?${next}`, id: "next-page" }, "Next page"));
      }
      list.replaceChildren(jobsTable(page.items), nav);
    } catch (e) {
      list.replaceChildren(notice(e.message, true));
    }
  }
  load();
  // The first page follows the stream when the counts change; a later page stays put while it is being read.
  return { onSnapshot: cursor || find ? null : (snap, previous) => { if (countsChanged(snap, previous)) load(); } };
}

// ------------------------------------------------------------------ job detail

// What a job asks Ray for per run, e.g. "1 CPU · 512 MiB · ssd=1" (an inline type's jobs ask for nothing).
function fmtResources(r) {
  if (!r) return "none (runs in the processor)";
  const parts = [r.cpus ? `${r.cpus} CPU` : "", r.memory_mib ? `${r.memory_mib} MiB` : "", r.gpus ? `${r.gpus} GPU` : "",
    ...Object.entries(r.custom || {}).map(([k, v]) => `${k}=${v}`)].filter(Boolean);
  return parts.join(" · ") || "none";
}

// Where an attempt's handler ran (its process and node), or why it has not started.
function attemptPlace(a) {
  if (a.waiting) return `waiting: ${a.waiting}`;
  const where = [a.executor, a.node ? `node ${a.node.slice(0, 8)}` : ""].filter(Boolean).join(" · ");
  return where ? `ran in ${where}` : "";
}

function timeline(attempts) {
  if (!attempts.length) return h("p", { class: "muted" }, "No attempt yet.");
  const start = Math.min(...attempts.map((a) => new Date(a.started_at).getTime()));
  const end = Math.max(...attempts.map((a) => new Date(a.finished_at || Date.now()).getTime()), start + 1);
  const pct = (t) => ((t - start) / (end - start)) * 100;
  return h("div", { class: "timeline" }, attempts.map((a) => {
    const s = new Date(a.started_at).getTime(), f = new Date(a.finished_at || Date.now()).getTime();
    const cls = a.finished_at ? (a.error ? "tl-bar failed" : "tl-bar") : "tl-bar open";
    const place = attemptPlace(a);
    const label = `attempt ${a.number} on ${a.worker}: ${a.finished_at ? duration(a.started_at, a.finished_at) : "running"}${a.error ? ` — ${a.error}` : ""}`;
    return h("div", { class: "tl-row", "data-attempt": a.number },
      h("div", {}, `#${a.number} `, a.error ? "failed" : a.finished_at ? "ok" : "running"),
      h("div", {}, h("div", { class: "tl-track", title: label, role: "img", "aria-label": label },
        h("div", { class: cls, style: `left:${pct(s).toFixed(2)}%;width:${Math.max(pct(f) - pct(s), 0.5).toFixed(2)}%` })),
        h("div", { class: "muted" }, `${a.worker} · ${fmtTime(a.started_at)} → ${a.finished_at ? fmtTime(a.finished_at) : "…"}`,
          place ? h("span", { "data-field": "place" }, ` · ${place}`) : "", a.error ? ` · ${a.error}` : "")));
  }));
}

function curlFor(job) {
  const body = { type: job.type, payload: job.payload, max_attempts: job.max_attempts, timeout_s: job.timeout_s };
  return `curl -X POST ${location.origin}/api/jobs -H 'Content-Type: application/json' -d '${JSON.stringify(body).replaceAll("'", "'\\''")}'`;
}

function jobPage(id) {
  const body = h("div", { id: "job" }, h("p", { class: "muted" }, "Loading…"));
  main.replaceChildren(h("h2", {}, "Job ", h("code", {}, id)), body);
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) {
    body.replaceChildren(notice("That is not a job id.", true));
    return { onSnapshot: null };
  }
  let lastVersion = null;
  let message = null;
  let final = false;
  let seq = 0;

  async function cancel() {
    try {
      await post(`/api/jobs/${id}/cancel`);
      message = notice("Cancellation requested.");
    } catch (e) {
      message = notice(`Cannot cancel: ${e.message}`, true);
    }
    lastVersion = null;
    load();
  }

  async function load() {
    const mine = ++seq;
    let job, events;
    try {
      [job, events] = await Promise.all([get(`/read/jobs/${encodeURIComponent(id)}`), get(`/read/jobs/${encodeURIComponent(id)}/events`)]);
    } catch (e) {
      if (mine === seq) body.replaceChildren(notice(e.status === 404 ? "No such job." : e.message, true));
      return;
    }
    if (mine !== seq) return; // a newer answer is (or will be) on the page
    final = FINAL.has(job.status) && events.length > 0 && events[events.length - 1].payload.version === job.version;
    const version = `${job.version}:${events.length}`;
    if (version === lastVersion) return;
    lastVersion = version;
    const curl = curlFor(job);
    const copy = h("button", { class: "secondary", type: "button", onclick: async () => {
      try { await navigator.clipboard.writeText(curl); copy.textContent = "Copied"; } catch { copy.textContent = "Select and copy the text"; }
    } }, "Copy");
    body.replaceChildren(
      message || "",
      h("div", { class: "row-actions" }, h("span", { id: "job-status" }, statusBadge(job.status)),
        ACTIVE.has(job.status) ? h("button", { class: "danger", type: "button", id: "cancel", onclick: cancel }, "Cancel job") : ""),
      h("div", { class: "grid2" },
        h("section", { class: "panel" }, h("h3", {}, "Fields"), h("dl", { class: "kv" },
          ...[["type", job.type], ["status", job.status], ["attempts", `${job.attempts} of ${job.max_attempts}`],
            ["timeout", `${job.timeout_s} s`], ["resources", fmtResources(job.resources)], ["created", fmtTime(job.created_at)], ["started", fmtTime(job.started_at)],
            ["finished", fmtTime(job.finished_at)], ["correlation id", job.correlation_id],
            ["idempotency key", job.idempotency_key || "—"], ["version", job.version]]
            .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
        h("section", { class: "panel" }, h("h3", {}, "Payload"), h("pre", { id: "payload" }, JSON.stringify(job.payload, null, 2)),
          h("h3", {}, job.error ? "Error" : "Result"),
          h("pre", { id: "result" }, job.error ? job.error : JSON.stringify(job.result, null, 2)))),
      h("section", { class: "panel", style: "margin-top:12px" }, h("h3", {}, "Attempts"), timeline(job.attempt_history || [])),
      h("section", { class: "panel", style: "margin-top:12px" }, h("h3", {}, "Events"),
        h("div", { class: "scroll" }, h("table", { id: "events" },
          h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "event"), h("th", {}, "when"), h("th", {}, "after previous"), h("th", { class: "hide-narrow" }, "by"))),
          h("tbody", {}, events.map((e, i) => h("tr", {},
            h("td", {}, e.payload.version), h("td", {}, e.event_type), h("td", {}, fmtTime(e.occurred_at)),
            h("td", {}, i ? duration(events[i - 1].occurred_at, e.occurred_at) : ""),
            h("td", { class: "hide-narrow" }, e.producer.service))))))),
      h("section", { class: "panel", style: "margin-top:12px" }, h("h3", {}, "Submit the same job again"),
        h("pre", { id: "curl" }, curl), h("div", { class: "row-actions" }, copy)));
  }
  load();
  return { onSnapshot: () => { if (!final) load(); } }; // a final job no longer changes (a requeue reloads)
}

// ------------------------------------------------------------------ dead letters

function dlqPage() {
  const list = h("div", { id: "dlq-list" }, h("p", { class: "muted" }, "Loading…"));
  const status = h("div", { id: "dlq-status" });
  const selected = new Set(); // survives the live re-renders
  let shown = null;
  let cursor = null; // the page shown: null is the newest
  let next = null;
  const first = h("button", { type: "button", class: "secondary", id: "dlq-first", onclick: () => { cursor = null; shown = null; load(); } }, "First page");
  const more = h("button", { type: "button", class: "secondary", id: "dlq-next", onclick: () => { cursor = next; shown = null; load(); } }, "Next page");
  const pager = h("div", { class: "row-actions" }, first, more);
  main.replaceChildren(h("h2", {}, "Dead letters"), status, list, pager);

  async function requeue(ids) {
    const done = [], failed = [];
    for (const id of ids) {
      try { await post(`/api/dlq/${id}/requeue`); done.push(id.slice(0, 8)); selected.delete(id); } catch (e) { failed.push(`${id.slice(0, 8)}: ${e.message}`); }
    }
    status.replaceChildren(done.length ? notice(`Requeued ${done.join(", ")}.`) : "", failed.length ? notice(failed.join("; "), true) : "");
    shown = null;
    load();
  }

  async function load() {
    let page;
    const query = new URLSearchParams({ limit: "50", ...(cursor ? { cursor } : {}) });
    try { page = await get(`/read/dlq?${query}`); } catch (e) { list.replaceChildren(notice(e.message, true)); return; }
    next = page.next_cursor;
    more.disabled = !next;
    first.disabled = !cursor;
    const key = JSON.stringify([cursor, page.items.map((d) => d.id)]);
    if (key === shown) return; // nothing new: keep the page (and the reader's place) as it is
    shown = key;
    if (!page.items.length) { list.replaceChildren(h("p", { class: "muted" }, "No dead letters.")); return; }
    const all = h("button", { type: "button", id: "requeue-selected", onclick: () => requeue([...selected]) }, "Requeue selected");
    list.replaceChildren(h("div", { class: "row-actions" }, all), h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, h("span", { class: "muted" }, "select")), h("th", {}, "job"), h("th", {}, "type"),
        h("th", {}, "reason"), h("th", { class: "hide-narrow" }, "message"), h("th", {}, "when"), h("th", {}, ""))),
      h("tbody", {}, page.items.map((d) => {
        const box = d.job_id ? h("input", { type: "checkbox", value: d.job_id, checked: selected.has(d.job_id), "aria-label": `select ${d.job_id}`,
          onchange: (e) => { if (e.target.checked) selected.add(d.job_id); else selected.delete(d.job_id); } }) : "";
        return h("tr", { "data-job": d.job_id || "" },
          h("td", {}, box), h("td", {}, d.job_id ? jobLink(d.job_id) : "(unreadable message)"), h("td", {}, d.job_type || "—"),
          h("td", {}, d.reason), h("td", { class: "hide-narrow" }, h("code", { title: d.message }, d.message.length > 120 ? `${d.message.slice(0, 120)}…` : d.message)), h("td", {}, ago(d.created_at)),
          h("td", {}, d.job_id ? h("button", { type: "button", class: "secondary", onclick: () => requeue([d.job_id]) }, "Requeue") : ""));
      })))));
  }
  load();
  let ticks = 0;
  // New dead letters appear by themselves: read again when the count moves (and every 5 s, for letters of
  // messages that never became jobs, which no count shows).
  return { onSnapshot: (snap, previous) => {
    ticks += 1;
    if (!previous || snap.stats.dead_lettered !== previous.stats.dead_lettered || ticks % 5 === 0) load();
  } };
}

// ------------------------------------------------------------------ submit

function inputFor(name, schema, required) {
  const id = `p-${name}`;
  const t = schema.type || (schema.anyOf ? (schema.anyOf.find((s) => s.type !== "null") || {}).type : undefined);
  let input;
  if (schema.enum) input = h("select", { id, name }, schema.enum.map((v) => h("option", { value: v, selected: v === schema.default }, v)));
  else if (t === "boolean") input = h("input", { id, name, type: "checkbox", checked: schema.default === true });
  else if (t === "integer" || t === "number") input = h("input", { id, name, type: "number", step: t === "integer" ? "1" : "any",
    min: schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum : null), max: schema.maximum ?? null,
    value: schema.default ?? "", required });
  else if (t === "string") input = h("input", { id, name, type: "text", value: schema.default ?? "", maxlength: schema.maxLength ?? null, required });
  else input = h("textarea", { id, name, "data-json": "1", rows: 3 }, schema.default !== undefined ? JSON.stringify(schema.default) : "");
  input.dataset.kind = t || "json";
  input.setAttribute("aria-describedby", `err-payload.${name}`);
  const help = [schema.description, schema.minimum !== undefined ? `min ${schema.minimum}` : null, schema.maximum !== undefined ? `max ${schema.maximum}` : null].filter(Boolean).join(" · ");
  return h("div", { class: "field", "data-field": `payload.${name}` },
    h("label", { for: id }, name, required ? " *" : ""), input, help ? h("div", { class: "help" }, help) : "",
    h("div", { class: "err", id: `err-payload.${name}`, "aria-live": "polite" }));
}

function readForm(fields) {
  const payload = {};
  for (const el of fields.querySelectorAll("input, select, textarea")) {
    const kind = el.dataset.kind;
    if (kind === "boolean") payload[el.name] = el.checked;
    else if (el.value === "") continue;
    else if (kind === "integer" || kind === "number") payload[el.name] = Number(el.value);
    else if (kind === "json") payload[el.name] = JSON.parse(el.value);
    else payload[el.name] = el.value;
  }
  return payload;
}

function submitPage() {
  const typeSelect = h("select", { id: "s-type", name: "type", required: true });
  const fields = h("div", { id: "fields" });
  const raw = h("textarea", { id: "s-raw", "aria-label": "payload as JSON", hidden: true });
  const rawToggle = h("input", { type: "checkbox", id: "s-raw-toggle" });
  const attempts = h("input", { id: "s-attempts", type: "number", min: 1, max: 20, value: 3 });
  const formErr = h("div", { class: "formerr", id: "form-error", role: "alert" });
  let types = [];

  function showFields() {
    const t = types.find((x) => x.type === typeSelect.value);
    if (!t) return;
    const props = t.payload_schema.properties || {};
    const required = new Set(t.payload_schema.required || []);
    fields.replaceChildren(h("p", { class: "muted" }, t.description), ...Object.entries(props).map(([n, s]) => inputFor(n, s, required.has(n))));
    raw.value = JSON.stringify(Object.fromEntries(Object.entries(props).filter(([, s]) => s.default !== undefined).map(([n, s]) => [n, s.default])), null, 2);
  }

  function clearErrors() {
    formErr.textContent = "";
    for (const el of main.querySelectorAll(".err")) el.textContent = "";
    for (const el of main.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function showErrors(err) {
    const details = (err.body && err.body.error && err.body.error.details) || [];
    formErr.textContent = err.message;
    for (const d of details) {
      const loc = d.loc.filter((p) => p !== "body").join(".");
      let target = document.getElementById(`err-${loc}`) || document.getElementById(`err-${loc.split(".").slice(0, 2).join(".")}`);
      if (target && target.closest("[hidden]")) target = document.getElementById("err-payload"); // raw JSON mode
      if (target) {
        target.textContent = target.textContent ? `${target.textContent}; ${loc}: ${d.msg}` : target.id === "err-payload" ? `${loc}: ${d.msg}` : d.msg;
        const input = target.parentElement.querySelector("input, select, textarea");
        if (input) input.setAttribute("aria-invalid", "true");
      } else formErr.textContent += ` (${loc}: ${d.msg})`;
    }
  }

  const form = h("form", { id: "submit-form", novalidate: true, onsubmit: async (e) => {
      e.preventDefault();
      clearErrors();
      let payload;
      try { payload = rawToggle.checked ? JSON.parse(raw.value || "{}") : readForm(fields); } catch (x) { formErr.textContent = `The payload is not valid JSON: ${x.message}`; return; }
      const body = { type: typeSelect.value, payload };
      if (attempts.value) body.max_attempts = Number(attempts.value);
      const button = document.getElementById("submit");
      button.disabled = true; // one click, one job
      try {
        const accepted = await post("/api/jobs", body);
        location.hash = `#/jobs/${accepted.job_id}`;
      } catch (x) {
        showErrors(x);
      } finally {
        button.disabled = false;
      }
    } },
    h("div", { class: "field" }, h("label", { for: "s-type" }, "Job type"), typeSelect),
    fields,
    h("div", { class: "field" }, h("label", { for: "s-raw-toggle" }, rawToggle, " edit the payload as raw JSON"), raw,
      h("div", { class: "err", id: "err-payload" })),
    h("div", { class: "field", "data-field": "max_attempts" }, h("label", { for: "s-attempts" }, "Max attempts"), attempts,
      h("div", { class: "err", id: "err-max_attempts" })),
    formErr,
    h("button", { type: "submit", id: "submit" }, "Submit"));
  rawToggle.addEventListener("change", () => { raw.hidden = !rawToggle.checked; fields.hidden = rawToggle.checked; });
  typeSelect.addEventListener("change", showFields);
  main.replaceChildren(h("h2", {}, "Submit a job"), form);
  jobTypes().then((t) => {
    types = t;
    typeSelect.replaceChildren(...t.map((x) => h("option", { value: x.type }, `${x.type} — ${x.description}`)));
    showFields();
  }).catch((e) => { formErr.textContent = e.message; });
  return { onSnapshot: null };
}

// ------------------------------------------------------------------ workers

const WORKERS_EVERY_MS = 3000;  // the workers app checks its actors every 2 s: reading faster shows nothing new
const BUILTIN = new Set(["CPU", "GPU", "memory", "object_store_memory"]);

const num = (v) => (v === null || v === undefined ? "—" : String(v));
const gib = (bytes) => (bytes === undefined ? "—" : `${(bytes / 2 ** 30).toFixed(1)} GiB`);

function nodesTable(nodes) {
  if (!nodes.length) return h("p", { class: "muted" }, "Ray lists no node.");
  return h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "node"), h("th", {}, "address"), h("th", {}, "state"), h("th", { class: "num" }, "CPU"),
      h("th", { class: "num hide-narrow" }, "GPU"), h("th", { class: "num" }, "memory"), h("th", { class: "hide-narrow" }, "custom"), h("th", {}, "actors"))),
    h("tbody", {}, nodes.map((n) => {
      const r = n.resources;
      const custom = Object.entries(r).filter(([k]) => !BUILTIN.has(k)).map(([k, v]) => `${k}=${v}`).join(" ");
      return h("tr", { "data-node": n.node_id },
        h("td", {}, h("code", { title: n.node_id }, n.node_id.slice(0, 8))), h("td", {}, n.address),
        h("td", { "data-field": "state" }, h("span", { class: `status ${n.alive ? "w-alive" : "w-dead"}` }, n.alive ? "alive" : "dead"), n.is_head ? " head" : ""),
        h("td", { class: "num" }, num(r.CPU)), h("td", { class: "num hide-narrow" }, num(r.GPU)), h("td", { class: "num" }, gib(r.memory)),
        h("td", { class: "hide-narrow" }, custom || "—"), h("td", { "data-field": "actors" }, n.actors.join(", ") || "—"));
    }))));
}

function actorsTable(actors) {
  if (!actors.length) return h("p", { class: "muted" }, "No processor or aggregator yet.");
  return h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "name"), h("th", { class: "hide-narrow" }, "node"), h("th", {}, "state"), h("th", { class: "num" }, "in flight"),
      h("th", { class: "num" }, "handled"), h("th", { class: "num hide-narrow" }, "restarts"), h("th", {}, "last seen"), h("th", { class: "num hide-narrow" }, "pid"))),
    h("tbody", {}, actors.map((a) => h("tr", { "data-actor": a.name, "data-kind": a.kind },
      h("td", {}, a.name, h("div", { class: "muted" }, a.kind)),
      h("td", { class: "hide-narrow", "data-field": "node" }, a.node_id ? h("code", { title: `${a.node_id} (${a.node_ip})` }, a.node_id.slice(0, 8)) : "—"),
      h("td", { "data-field": "state" }, h("span", { class: `status w-${a.state}` }, a.state)),
      h("td", { class: "num", "data-field": "in_flight" }, num(a.in_flight)),
      h("td", { class: "num", "data-field": "handled" }, num(a.handled)),
      h("td", { class: "num hide-narrow" }, a.restarts),
      h("td", { title: fmtTime(a.last_seen) }, ago(a.last_seen)),
      h("td", { class: "num hide-narrow" }, num(a.pid)))))));
}

function workersPage() {
  const line = h("p", { id: "workers-line", role: "status" }, "Loading…");
  const problem = h("div", { id: "workers-problem" });
  const nodes = h("div", { id: "worker-nodes" });
  const actors = h("div", { id: "worker-actors" });
  main.replaceChildren(h("h2", {}, "Workers"), line, problem,
    h("section", { class: "panel" }, h("h3", {}, "Nodes"), nodes),
    h("section", { class: "panel", style: "margin-top:12px" }, h("h3", {}, "Processors and aggregators"), actors));
  const page = { onSnapshot: null };
  let busy = false;

  async function load() {
    if (busy) return;
    busy = true;
    let view;
    try { view = await get("/read/workers"); } catch (e) {
      problem.replaceChildren(notice(`The workers cannot be shown: ${e.message}`, true));  // the last answer stays
      return;
    } finally { busy = false; }
    const w = view.workers;
    const short = w.actual < w.desired ? " — fewer than desired" : "";
    line.textContent = `${w.actual} of ${w.desired} processors alive${short} (min ${w.min}, max ${w.max}) · ` +
      `${w.aggregators} aggregator${w.aggregators === 1 ? "" : "s"} · ${view.nodes.length} node${view.nodes.length === 1 ? "" : "s"} · ` +
      `checked ${ago(w.checked_at)}`;
    problem.replaceChildren();
    nodes.replaceChildren(nodesTable(view.nodes));
    actors.replaceChildren(actorsTable(w.actors));
  }
  load();
  // Its own timer rather than the stream's snapshots: the page stays live while the stream reconnects.
  const timer = setInterval(() => (state.page === page ? load() : clearInterval(timer)), WORKERS_EVERY_MS);
  return page;
}

// ------------------------------------------------------------------ router

function route() {
  const hash = location.hash || "#/";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  let name = "overview";
  if (path.startsWith("/jobs/")) { name = "jobs"; state.page = jobPage(decodeURIComponent(path.slice(6))); }
  else if (path === "/jobs") { name = "jobs"; state.page = jobsPage(params); }
  else if (path === "/dlq") { name = "dlq"; state.page = dlqPage(); }
  else if (path === "/submit") { name = "submit"; state.page = submitPage(); }
  else if (path === "/workers") { name = "workers"; state.page = workersPage(); }
  else state.page = overviewPage();
  for (const a of document.querySelectorAll("header nav a[data-page]")) {
    if (a.dataset.page === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  main.focus({ preventScroll: true });
}

async function links() {
  try {
    const found = await get("/links");
    document.getElementById("links").replaceChildren(...found.map((l) => h("a", { href: l.url, target: "_blank", rel: "noopener" }, l.name)));
  } catch { /* the banner says it */ }
}

document.getElementById("keyform").addEventListener("submit", useKey);
document.querySelector(".skip").addEventListener("click", (e) => { e.preventDefault(); main.focus(); });
window.addEventListener("hashchange", route);
// Leaving the page closes its stream: left open (a page kept for back/forward holds it too) it would take one
// of the browser's six connections to this host until it ended, up to 50 s on, and the seventh page waits.
window.addEventListener("pagehide", () => {
  const ctl = state.stream;
  state.stream = null;  // no reconnect from the aborted stream
  if (ctl) ctl.abort();
  clearTimeout(retry);  // nor from one that was due (timers only pause while a page is kept for back/forward)
  clearTimeout(lost);
});
window.addEventListener("pageshow", (e) => { if (e.persisted) connect(); });  // back from that cache
route();
connect();
links();
