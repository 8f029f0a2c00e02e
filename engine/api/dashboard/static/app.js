// engine dashboard: hash-routed pages over the JSON API; live counts by server-sent events.
// Every value from the server is inserted as text (never as HTML).
"use strict";

const API = "/admin/queues/api";
const STATES = ["waiting", "active", "delayed", "completed", "failed"];
const session = { csrf: "", admin: false, user: "" };
let liveCounts = null;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function render(...nodes) {
  // replaceChildren would print a skipped (null) section as the text "null".
  document.getElementById("view").replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}

function fmtTime(ms) {
  if (ms === null || ms === undefined || ms === "") return "—";
  return new Date(Number(ms)).toISOString().replace("T", " ").replace("Z", " UTC");
}

function json(value) {
  return h("pre", {}, JSON.stringify(value, null, 2));
}

function toast(message, error) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.className = "toast" + (error ? " error" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = "toast hidden"; }, 3000);
}

async function get(path) {
  const r = await fetch(API + path, { credentials: "same-origin" });
  if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
  return r.json();
}

// A mutation: every one carries the session's CSRF token (the server refuses it without).
// A refusal throws an Error with the server's message and the `field` it names.
async function send(method, path, body) {
  const r = await fetch(API + path, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf },
    body: method === "DELETE" ? undefined : JSON.stringify(body || {}),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(data.error || `HTTP ${r.status}`), { field: data.field, status: r.status });
  return data;
}

function post(path, body) {
  return send("POST", path, body);
}

function action(label, path, opts) {
  opts = opts || {};
  return h("button", {
    class: opts.danger ? "danger" : "",
    "data-action": opts.id || label.toLowerCase(),
    disabled: !session.admin || Boolean(opts.disabled),
    title: !session.admin ? "admin role required" : opts.disabled || "",
    onclick: async (ev) => {
      if (opts.confirm && !window.confirm(opts.confirm)) return;
      ev.target.disabled = true;
      try {
        await send(opts.method || "POST", path, opts.body);
        toast(`${label}: done`);
        if (opts.after) opts.after(); else route();
      } catch (e) {
        toast(`${label}: ${e.message}`, true);
        ev.target.disabled = false;
      }
    },
  }, label);
}

const enc = encodeURIComponent;

// -- pages --------------------------------------------------------------------------------

function queueRow(q) {
  const link = (state, n) => h("a", { href: `#/queue/${enc(q.name)}/${state}`, "data-count": `${q.name}:${state}` }, n);
  return h("tr", { "data-queue": q.name },
    h("td", {}, h("a", { href: `#/queue/${enc(q.name)}/waiting` }, q.name), " ",
      q.isPaused ? h("span", { class: "badge paused", "data-paused": "1" }, "paused") : null),
    h("td", { class: "num" }, link("waiting", q.isPaused ? q.paused : q.waiting)),
    h("td", { class: "num" }, link("active", q.active)),
    h("td", { class: "num" }, link("delayed", q.delayed)),
    h("td", { class: "num" }, link("completed", q.completed)),
    h("td", { class: "num" }, link("failed", q.failed)),
    h("td", { class: "num" }, q.schedules),
    h("td", {}, q.isPaused
      ? action("Resume", `/queues/${enc(q.name)}/resume`, { id: `resume-${q.name}` })
      : action("Pause", `/queues/${enc(q.name)}/pause`, { id: `pause-${q.name}` })),
  );
}

function renderQueues(queues, events) {
  const body = h("tbody", { id: "queue-rows" }, queues.map(queueRow));
  const activity = h("ul", { class: "activity", id: "activity" });
  const old = document.getElementById("activity");
  if (old) activity.append(...Array.from(old.childNodes).slice(0, 30));
  for (const e of events || []) {  // oldest first, each on top: newest ends up first
    activity.prepend(h("li", {}, `${fmtTime(e.ts)}  ${e.queue}  ${e.event}${e.jobId ? " #" + e.jobId : ""}${e.by ? " by " + e.by : ""}`));
  }
  while (activity.childNodes.length > 30) activity.lastChild.remove();
  render(
    h("h1", {}, "Queues"),
    h("table", { id: "queues" },
      h("thead", {}, h("tr", {}, ["Queue", "Waiting", "Active", "Delayed", "Completed", "Failed", "Schedules", ""].map((t) => h("th", {}, t)))),
      body),
    h("h2", {}, "Live activity"),
    activity,
  );
}

async function pageQueues() {
  const data = liveCounts ? { queues: liveCounts } : await get("/queues");
  renderQueues(data.queues, []);
}

async function pageQueue(name, state, page) {
  page = Number(page || 0);
  const [data, all] = await Promise.all([
    get(`/queues/${enc(name)}/jobs?state=${enc(state)}&page=${page}`),
    get("/queues"),
  ]);
  const q = all.queues.find((x) => x.name === name) || {};
  const tabs = h("div", { class: "tabs" }, STATES.map((s) =>
    h("a", { href: `#/queue/${enc(name)}/${s}`, class: s === state ? "active" : "" }, `${s} (${s === "waiting" && q.isPaused ? q.paused : q[s] ?? 0})`)));
  const toolbar = h("div", { class: "toolbar" },
    q.isPaused ? h("span", { class: "badge paused" }, "paused") : null,
    q.isPaused ? action("Resume", `/queues/${enc(name)}/resume`, { id: "resume" })
      : action("Pause", `/queues/${enc(name)}/pause`, { id: "pause" }),
    state === "completed" || state === "failed"
      ? action(`Clean ${state}`, `/queues/${enc(name)}/clean/${state}`, { id: "clean", danger: true, body: { graceMs: 0 }, confirm: `Remove every ${state} job of ${name}?` })
      : null);
  const rows = data.jobs.map((j) => h("tr", { "data-job": j.id },
    h("td", {}, h("a", { href: `#/job/${enc(name)}/${enc(j.id)}` }, j.id)),
    h("td", {}, j.name),
    h("td", { class: "num" }, j.attemptsMade),
    h("td", {}, fmtTime(j.timestamp)),
    h("td", {}, fmtTime(j.finishedOn || j.processedOn)),
    h("td", {}, j.failedReason || "")));
  const pages = Math.max(1, Math.ceil(data.total / data.size));
  const pager = h("div", { class: "pager" },
    h("a", { href: page > 0 ? `#/queue/${enc(name)}/${state}/${page - 1}` : null, "data-page": "prev" }, "‹ prev"),
    h("span", { class: "muted" }, `page ${page + 1} of ${pages} · ${data.total} jobs`),
    h("a", { href: page + 1 < pages ? `#/queue/${enc(name)}/${state}/${page + 1}` : null, "data-page": "next" }, "next ›"));
  render(
    h("h1", {}, h("a", { href: "#/" }, "Queues"), " / ", name),
    tabs, toolbar,
    h("table", { id: "jobs" },
      h("thead", {}, h("tr", {}, ["Id", "Name", "Attempts", "Created", "Finished / started", "Failed reason"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, `No ${state} jobs`))])),
    pager);
}

async function pageJob(name, id) {
  const data = await get(`/queues/${enc(name)}/jobs/${enc(id)}`);
  const j = data.job;
  const back = `#/queue/${enc(name)}/${j.state || "waiting"}`;
  const pct = typeof j.progress === "number" ? Math.max(0, Math.min(100, j.progress)) : null;
  const bar = h("div", { class: "progress" }, h("span"));
  if (pct !== null) bar.firstChild.style.width = `${pct}%`;
  const actions = h("div", { class: "toolbar" },
    j.state === "failed" ? action("Retry", `/queues/${enc(name)}/jobs/${enc(id)}/retry`, { id: "retry" }) : null,
    j.state === "delayed" ? action("Promote", `/queues/${enc(name)}/jobs/${enc(id)}/promote`, { id: "promote" }) : null,
    ["waiting", "delayed", "active"].includes(j.state) ? action("Cancel", `/queues/${enc(name)}/jobs/${enc(id)}/cancel`, { id: "cancel", danger: true, confirm: `Cancel job ${id}? It fails at once and is not retried${j.state === "active" ? "; its handler is stopped" : ""}.` }) : null,
    j.state !== "active" ? action("Remove", `/queues/${enc(name)}/jobs/${enc(id)}/remove`, { id: "remove", danger: true, confirm: `Remove job ${id}?`, after: () => { location.hash = back; } }) : null);
  const kv = (pairs) => h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  render(
    h("h1", {}, h("a", { href: "#/" }, "Queues"), " / ", h("a", { href: back }, name), " / job ", id),
    actions,
    kv([
      ["State", h("span", { class: `badge ${j.state}`, id: "job-state" }, j.state || "unknown")],
      ["Name", j.name],
      ["Attempts made", `${j.attemptsMade} of ${j.opts.attempts || 1}`],
      ["Stalled", j.stalledCount],
      ["Progress", pct !== null ? h("span", {}, bar, ` ${pct}%`) : JSON.stringify(j.progress)],
      ["Created", fmtTime(j.timestamp)],
      ["Started", fmtTime(j.processedOn)],
      ["Finished", fmtTime(j.finishedOn)],
      ["Failed reason", h("span", { id: "failed-reason" }, j.failedReason || "—")],
    ]),
    h("div", { class: "grid" },
      h("section", {}, h("h2", {}, "Data"), json(j.data)),
      h("section", {}, h("h2", {}, "Options"), json(j.opts))),
    j.returnvalue !== null ? h("section", {}, h("h2", {}, "Return value"), json(j.returnvalue)) : null,
    h("h2", {}, "Stack trace"),
    j.stacktrace.length ? h("pre", { id: "stacktrace" }, j.stacktrace.join("\n\n")) : h("p", { class: "muted" }, "none"),
    h("h2", {}, "Logs"),
    data.logs.length ? h("pre", {}, data.logs.join("\n")) : h("p", { class: "muted" }, "none"),
    h("h2", {}, "Timeline"),
    h("table", { id: "timeline" },
      h("thead", {}, h("tr", {}, ["Time", "Event", "Details"].map((t) => h("th", {}, t)))),
      h("tbody", {}, data.timeline.map((e) => {
        const { ts, event, jobId, ...rest } = e;
        return h("tr", {}, h("td", {}, fmtTime(ts)), h("td", {}, event),
          h("td", {}, Object.entries(rest).map(([k, v]) => `${k}=${v}`).join("  ")));
      }))));
}

async function pageAudit() {
  const data = await get("/audit");
  const rows = data.entries.map((e) => {
    const what = e.jobId ? `job ${e.jobId}` : e.schedule ? `schedule ${e.schedule}` : e.state ? `${e.count} ${e.state} jobs` : "queue";
    // A schedule's own change is the event "schedule"; its action says which.
    const act = e.event === "schedule" ? `schedule ${e.action}` : e.event;
    return h("tr", {}, h("td", {}, fmtTime(e.ts)), h("td", {}, e.by), h("td", {}, act), h("td", {}, e.queue), h("td", {}, what));
  });
  render(
    h("h1", {}, "Audit"),
    h("p", { class: "muted" }, "Who paused, resumed, cleaned, retried, promoted, removed, cancelled or ran what, and who created, changed, paused, resumed or deleted which schedule (newest first, from the queues' event streams)."),
    h("table", { id: "audit" },
      h("thead", {}, h("tr", {}, ["When", "Who", "Action", "Queue", "What"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "Nothing yet"))])));
}

// -- router and live updates ------------------------------------------------------------

let current = "";

async function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  current = parts[0] || "queues";
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === current || (current === "queue" && a.dataset.nav === "queues") || (current === "job" && a.dataset.nav === "queues"));
  }
  try {
    if (current === "queue") await pageQueue(parts[1], parts[2] || "waiting", parts[3]);
    else if (current === "job") await pageJob(parts[1], parts.slice(2).join("/"));
    else if (current === "schedules") await pageSchedules(parts.slice(1));
    else if (current === "audit") await pageAudit();
    else { current = "queues"; await pageQueues(); }
    document.body.dataset.page = current;
  } catch (e) {
    render(h("p", { class: "muted" }, `Could not load: ${e.message}`));
  }
}

function connectLive() {
  const badge = document.getElementById("live");
  const source = new EventSource(API + "/live");
  source.addEventListener("open", () => { badge.textContent = "live"; badge.className = "live on"; });
  source.addEventListener("error", () => { badge.textContent = "reconnecting"; badge.className = "live off"; });
  source.addEventListener("counts", (msg) => {
    const data = JSON.parse(msg.data);
    liveCounts = data.queues;
    badge.textContent = "live"; badge.className = "live on";
    if (current === "queues") renderQueues(data.queues, data.events);
  });
}

async function start() {
  Object.assign(session, await get("/session"));
  document.getElementById("user").textContent = `${session.user}${session.admin ? " (admin)" : ""}`;
  window.addEventListener("hashchange", route);
  await route();
  connectLive();
}

// After every deferred script (schedules.js defines a page).
document.addEventListener("DOMContentLoaded", start);
