// engine dashboard: the schedules page (list, run now, pause, resume, delete) and the
// schedule form (create, edit) whose next fire times are previewed before it can be saved.
// Uses app.js's helpers (h, render, get, send, action, toast, route, enc, session).
"use strict";

const DECLARED = "declared in engine.toml: change it there (pause, resume and run work here)";
const PREVIEW_DELAY_MS = 250;

// A fire time in the schedule's own zone (seconds only when it has some), e.g.
// "Wed 02 Dec 03:00 CET".
function fmtZoned(ms, tz) {
  const d = new Date(Number(ms));
  const opts = { timeZone: tz || "UTC", weekday: "short", day: "2-digit", month: "short", year: "numeric",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" };
  if (d.getUTCSeconds() || d.getUTCMilliseconds()) opts.second = "2-digit";
  try {
    return new Intl.DateTimeFormat("en-GB", opts).format(d);
  } catch (e) {  // a zone this browser does not know
    return fmtTime(ms);
  }
}

function when(s) {
  return s.cron ? h("code", {}, s.cron) : h("span", {}, `every ${fmtInterval(s.everyMs)}`);
}

function fmtInterval(ms) {
  if (ms % 3600000 === 0) return `${ms / 3600000} h`;
  if (ms % 60000 === 0) return `${ms / 60000} min`;
  if (ms % 1000 === 0) return `${ms / 1000} s`;
  return `${ms} ms`;
}

function scheduleRow(s) {
  const base = `/queues/${enc(s.queue)}/schedules/${enc(s.name)}`;
  const declared = s.source !== "api";
  const ended = !s.paused && s.nextFireMs === null && !s.setAside;
  const fires = s.nextFires || [];
  return h("tr", { "data-schedule": s.name, "data-source": s.source },
    h("td", {},
      h("div", { class: "name" }, s.name),
      h("span", { class: `badge ${declared ? "declared" : "api"}`, title: declared ? DECLARED : "created at run time (API or dashboard)" },
        declared ? "declared" : "api"), " ",
      s.paused ? h("span", { class: "badge paused", "data-paused": "1" }, "paused") : null,
      ended ? h("span", { class: "badge", "data-ended": "1" }, s.limit ? `ended: fired ${s.firedCount} of ${s.limit}` : "ended") : null,
      s.setAside ? h("div", { class: "bad small" }, `set aside: ${s.setAside}`) : null),
    h("td", {}, h("a", { href: `#/queue/${enc(s.queue)}/waiting` }, s.queue)),
    h("td", {}, when(s), h("div", { class: "muted small" }, s.tz), s.limit ? h("div", { class: "muted small" }, `limit ${s.limit}`) : null),
    h("td", { class: "fires" }, fires.length ? fires.map((t) => h("div", { title: fmtTime(t) }, fmtZoned(t, s.tz))) : h("span", { class: "muted" }, s.paused ? "paused" : "none")),
    h("td", {}, h("div", {}, fmtTime(s.lastFireMs)), h("div", { class: "muted small" }, s.lastSuccessMs ? `ok ${fmtTime(s.lastSuccessMs)}` : "")),
    h("td", { class: "num" }, s.firedCount),
    h("td", { class: "num" }, s.missedCount),
    h("td", { class: "num" }, s.consecutiveFailures),
    h("td", {}, s.leader ? `${s.leader} (epoch ${s.leaderEpoch})` : h("span", { class: "muted" }, "none")),
    h("td", { class: "actions" },
      h("div", { class: "buttons" },
        action("Run now", `${base}/run`, { id: `run-${s.name}` }),
        s.paused ? action("Resume", `${base}/resume`, { id: `resume-${s.name}` })
          : action("Pause", `${base}/pause`, { id: `pause-${s.name}` }),
        h("button", {
          "data-action": `edit-${s.name}`,
          disabled: !session.admin || declared || !s.definition,
          title: !session.admin ? "admin role required" : declared ? DECLARED : "",
          onclick: () => { location.hash = `#/schedules/edit/${enc(s.queue)}/${enc(s.name)}`; },
        }, "Edit"),
        action("Delete", base, { id: `delete-${s.name}`, method: "DELETE", danger: true, disabled: declared ? DECLARED : "",
          confirm: `Delete schedule ${s.name} of ${s.queue} and its history? Jobs it already enqueued stay.` })),
      declared ? h("div", { class: "muted small" }, "Edit and delete: in engine.toml") : null));
}

async function pageSchedules(parts) {
  if (parts[0] === "new") return pageScheduleForm(null);
  if (parts[0] === "edit") return pageScheduleForm({ queue: parts[1], name: parts.slice(2).join("/") });
  const data = await get("/schedules");
  const rows = data.schedules.map(scheduleRow);
  render(
    h("div", { class: "titlebar" },
      h("h1", {}, "Schedules"),
      h("button", { class: "primary", "data-action": "new-schedule", disabled: !session.admin,
        title: session.admin ? "" : "admin role required",
        onclick: () => { location.hash = "#/schedules/new"; } }, "New schedule")),
    h("table", { id: "schedules" },
      h("thead", {}, h("tr", {}, ["Schedule", "Queue", "When", "Next fires", "Last fire", "Fired", "Missed", "Failing", "Leader", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : [h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No schedules registered"))])),
    h("p", { class: "muted small" }, "Fire times are shown in each schedule's zone (hover for UTC). Declared schedules come from engine.toml: a deploy redefines them, so they are changed there; pausing one here survives restarts."));
}

// -- the form -------------------------------------------------------------------------------

function field(label, input, hint) {
  return h("label", { class: "field", "data-field": input.name },
    h("span", { class: "label" }, label), input, hint ? h("span", { class: "hint" }, hint) : null,
    h("span", { class: "error" }));
}

function parseWhen(text, name) {
  if (!text.trim()) return undefined;
  const ms = Date.parse(text.trim());
  if (Number.isNaN(ms)) throw Object.assign(new Error(`${name}: not a date (e.g. 2026-01-31T08:00Z)`), { field: name });
  return ms;
}

function parseJson(text, name) {
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw Object.assign(new Error(`${name}: not valid JSON`), { field: name });
  }
}

function isoOrEmpty(ms) {
  return ms === undefined || ms === null ? "" : new Date(ms).toISOString();
}

async function pageScheduleForm(editing) {
  const [queues, zones, listed] = await Promise.all([get("/queues"), get("/zones"), editing ? get("/schedules") : null]);
  let def = { queue: (queues.queues[0] || {}).name, cron: "0 * * * *", timezone: "UTC", misfire: "once", overlap: "allow", job_name: "", data: null, job: {} };
  if (editing) {
    const found = listed.schedules.find((s) => s.queue === editing.queue && s.name === editing.name);
    if (!found || !found.definition) throw new Error(`schedule ${editing.name} of ${editing.queue} not found`);
    if (found.source !== "api") throw new Error(`${editing.name}: ${DECLARED}`);
    def = found.definition;
  }
  const input = (name, value, attrs) => h("input", { name, value: value ?? "", autocomplete: "off", ...(attrs || {}) });
  const select = (name, options, value) => h("select", { name }, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
  const kind = def.every_ms ? "every" : "cron";
  const els = {
    name: input("name", editing ? editing.name : "", { readonly: Boolean(editing), placeholder: "e.g. nightly-report", pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,99}" }),
    queue: select("queue", queues.queues.map((q) => [q.name, q.name]), def.queue),
    kind: select("kind", [["cron", "cron expression"], ["every", "fixed interval"]], kind),
    cron: input("cron", def.cron || "", { class: "mono", placeholder: "min hour day month weekday, e.g. 30 6 * * 1-5" }),
    every_ms: input("every_ms", def.every_ms || "", { type: "number", min: 1000, step: 1000, placeholder: "ms, at least 1000" }),
    timezone: input("timezone", def.timezone || "UTC", { list: "zones" }),
    job_name: input("job_name", def.job_name || "", { placeholder: "default: the schedule's name" }),
    data: h("textarea", { name: "data", rows: 3, class: "mono", placeholder: '{"report": "daily"}' }, def.data === null || def.data === undefined ? "" : JSON.stringify(def.data, null, 2)),
    job: h("textarea", { name: "job", rows: 3, class: "mono", placeholder: '{"attempts": 3, "backoff": {"type": "exponential", "delay": 5000}}' }, def.job && Object.keys(def.job).length ? JSON.stringify(def.job, null, 2) : ""),
    misfire: select("misfire", [["once", "once: one catch-up run"], ["skip", "skip: no late runs"], ["all", "all: every missed tick (within the grace)"]], def.misfire),
    overlap: select("overlap", [["allow", "allow"], ["skip", "skip while the previous run is unfinished"]], def.overlap),
    limit: input("limit", def.limit || "", { type: "number", min: 1, placeholder: "no limit" }),
    start: input("start", isoOrEmpty(def.start), { placeholder: "optional, e.g. 2026-01-31T08:00Z" }),
    end: input("end", isoOrEmpty(def.end), { placeholder: "optional" }),
  };
  const preview = h("ol", { id: "preview", class: "fires" });
  const status = h("p", { id: "preview-status", class: "muted" }, "Previewing…");
  const save = h("button", { id: "save", class: "primary", disabled: true }, editing ? "Save changes" : "Create schedule");
  const formError = h("p", { id: "form-error", class: "bad" });
  let previewed = null;  // the body whose preview is on screen
  let timer = null;
  let sequence = 0;

  function body() {
    const out = { queue: els.queue.value };
    if (els.kind.value === "cron") out.cron = els.cron.value;
    else out.every_ms = els.every_ms.value === "" ? undefined : Number(els.every_ms.value);
    out.timezone = els.timezone.value;
    if (els.job_name.value) out.job_name = els.job_name.value;
    const data = parseJson(els.data.value, "data");
    if (data !== undefined) out.data = data;
    const job = parseJson(els.job.value, "job");
    if (job !== undefined) out.job = job;
    out.misfire = els.misfire.value;
    if (def.misfire_grace_ms !== undefined) out.misfire_grace_ms = def.misfire_grace_ms;
    out.overlap = els.overlap.value;
    if (els.limit.value !== "") out.limit = Number(els.limit.value);
    const start = parseWhen(els.start.value, "start");
    if (start !== undefined) out.start = start;
    const end = parseWhen(els.end.value, "end");
    if (end !== undefined) out.end = end;
    return out;
  }

  function showError(e) {
    for (const f of document.querySelectorAll(".field")) { f.classList.remove("invalid"); f.querySelector(".error").textContent = ""; }
    if (!e) return;
    const top = (e.field || "").split(".")[0];
    const target = document.querySelector(`.field[data-field="${top === "every_ms" && els.kind.value === "cron" ? "cron" : top}"]`);
    if (target) { target.classList.add("invalid"); target.querySelector(".error").textContent = e.message; }
  }

  async function refresh() {
    const mine = ++sequence;
    previewed = null;
    save.disabled = true;
    formError.textContent = "";
    let draft;
    try {
      draft = body();
      if (!els.name.value) throw Object.assign(new Error("name: required"), { field: "name" });
      if (!els.name.checkValidity()) throw Object.assign(new Error("name: 1-100 letters, digits, '_', '-' or '.'"), { field: "name" });
      const got = await send("POST", "/schedule-preview", draft);
      if (mine !== sequence) return;  // a newer edit is being previewed
      showError(null);
      const tz = got.timezone;
      preview.replaceChildren(...got.nextFires.map((t) => h("li", {}, fmtZoned(t, tz), h("span", { class: "muted" }, `  ·  ${fmtTime(t)}`))));
      status.textContent = got.nextFires.length ? `The next ${got.nextFires.length} fire times (${tz}):` : "It never fires (past its end or limit).";
      status.className = "muted";
      previewed = JSON.stringify(draft);
      save.disabled = !session.admin;
    } catch (e) {
      if (mine !== sequence) return;
      preview.replaceChildren();
      status.textContent = `Cannot preview: ${e.message}`;
      status.className = "bad";
      showError(e);
    }
  }

  function changed() {
    els.cron.closest(".field").hidden = els.kind.value !== "cron";
    els.every_ms.closest(".field").hidden = els.kind.value !== "every";
    clearTimeout(timer);
    save.disabled = true;
    timer = setTimeout(refresh, PREVIEW_DELAY_MS);
  }

  save.addEventListener("click", async (ev) => {
    ev.preventDefault();
    let draft;
    try { draft = body(); } catch (e) { showError(e); return; }
    if (JSON.stringify(draft) !== previewed) { changed(); return; }  // preview what is saved
    save.disabled = true;
    try {
      const got = await send("PUT", `/schedules/${enc(els.name.value)}`, draft);
      toast(`Schedule ${els.name.value}: ${got.action}`);
      location.hash = "#/schedules";
    } catch (e) {
      formError.textContent = e.message;
      showError(e);
      save.disabled = false;
    }
  });

  const form = h("form", { id: "schedule-form", class: "form", oninput: changed, onsubmit: (ev) => ev.preventDefault() },
    h("div", { class: "columns" },
      h("section", { class: "card" },
        field("Name", els.name, editing ? "a schedule is renamed by creating a new one" : null),
        field("Queue", els.queue),
        field("Fires", els.kind),
        field("Cron expression", els.cron, "5 fields, or 6 with seconds first; names (MON, JAN) and @daily work"),
        field("Interval (ms)", els.every_ms),
        field("Time zone", els.timezone, "IANA name; the cron fields are read in it"),
        field("Misfire", els.misfire, "after downtime"),
        field("Overlap", els.overlap),
        field("Limit", els.limit, "end after this many fires in all"),
        h("div", { class: "pair" }, field("Start", els.start), field("End", els.end))),
      h("section", { class: "card" },
        field("Job name", els.job_name),
        field("Job data (JSON)", els.data),
        field("Job options (JSON)", els.job, "attempts, backoff, priority, timeout, removeOnComplete, removeOnFail"),
        h("h2", {}, "Preview"), status, preview)),
    h("div", { class: "toolbar" }, save, h("a", { href: "#/schedules" }, "Cancel"), formError));
  render(
    h("h1", {}, h("a", { href: "#/schedules" }, "Schedules"), " / ", editing ? `edit ${editing.name}` : "new schedule"),
    h("datalist", { id: "zones" }, zones.zones.map((z) => h("option", { value: z }))),
    form);
  changed();
}
