// The live status page: one snapshot, then events, over one Server-Sent
// Events stream (api/events?snapshot=1). No polling, no reload. Every string
// from the fleet goes into the page as text, never as HTML.
"use strict";

const services = new Map();   // uuid -> service (the CLI's JSON fields)
const changed = new Map();    // uuid -> time of its last change (for the flash)
let events = [];              // newest first
let snapshotRevision = 0;
let source = null;
let pending = false;
// Above this many matching services the page lists only the DOWN ones (a
// browser does not redraw 100,000 rows per event); the filter narrows.
const ROW_LIMIT = 2000;

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function clock(secs) {
  if (!secs) return "";
  return new Date(secs * 1000).toLocaleTimeString([], { hour12: false });
}

function when(secs) {
  if (!secs) return "";
  const d = new Date(secs * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" + p(d.getMinutes());
}

function statusText(s) {
  if (s.status === "UP") return s.why === "lifted" ? "UP (lifted)" : "UP";
  return s.why && s.why !== "down" ? "DOWN (" + s.why + ")" : "DOWN";
}

function whyText(s) {
  switch (s.status === "UP" ? (s.why || "") : s.why) {
    case "lifted": return "maintenance lifted";
    case "forced": {
      let t = "forced down";
      if (s.maintenance_note) t += ": " + s.maintenance_note;
      if (s.maintenance_start || s.maintenance_end) {
        t += " (" + (when(s.maintenance_start) || "…") + " → " + (when(s.maintenance_end) || "until lifted") + ")";
      }
      return t;
    }
    case "missed": return "heartbeat missed" + (s.heartbeat_ms ? " (deadline " + s.heartbeat_ms / 1000 + " s)" : "");
    case "expired": return "lease expired: its process stopped keeping it alive";
    case "closed": return "closed by its owner";
    case "down":
    case "declared": return "its owner set it DOWN";
    case "deleted": return "deleted";
    default:
      if (s.status === "UP") return s.heartbeat_ms ? "heartbeat every " + s.heartbeat_ms / 1000 + " s" : "";
      return s.why || "";
  }
}

function setLink(state, text) {
  $("link").dataset.state = state;
  $("link-text").textContent = text;
}

function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

function matches(s, words, onlyDown) {
  if (onlyDown && s.status !== "DOWN") return false;
  if (!words.length) return true;
  const hay = [s.type, s.host, s.region, s.uuid, statusText(s), s.maintenance_note].join(" ").toLowerCase();
  return words.every((w) => hay.includes(w));
}

function render() {
  // Counts over the whole fleet.
  let up = 0, down = 0;
  const whys = new Map();
  for (const s of services.values()) {
    if (s.status === "UP") up++;
    else {
      down++;
      const w = s.why || "down";
      whys.set(w, (whys.get(w) || 0) + 1);
    }
  }
  $("n-total").textContent = services.size;
  $("n-up").textContent = up;
  $("n-down").textContent = down;
  const chips = $("whys");
  chips.replaceChildren();
  for (const [w, n] of [...whys.entries()].sort()) {
    chips.append(el("span", "chip " + w, n + " " + w));
  }

  // Groups: type, then region, then host.
  const words = $("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const onlyDown = $("only-down").checked;
  const byType = new Map();
  let matched = 0;
  for (const s of services.values()) {
    if (!matches(s, words, onlyDown)) continue;
    matched++;
    if (!byType.has(s.type)) byType.set(s.type, new Map());
    const regions = byType.get(s.type);
    if (!regions.has(s.region)) regions.set(s.region, []);
    regions.get(s.region).push(s);
  }
  const now = Date.now() / 1000;
  const limited = matched > ROW_LIMIT;
  const out = [];
  if (limited) {
    out.push(el("p", "note", matched + " services match: only the DOWN ones are listed. " +
      "Type in the filter (a type, a host, a region) to list UP ones too."));
  }
  for (const type of [...byType.keys()].sort()) {
    const regions = byType.get(type);
    let n = 0, nDown = 0;
    for (const list of regions.values()) { n += list.length; nDown += list.filter((s) => s.status !== "UP").length; }
    const g = el("article", "group");
    g.dataset.type = type;
    const h = el("h2", null, type);
    h.append(el("span", "meta", n + " service" + (n === 1 ? "" : "s") + (nDown ? " · " + nDown + " DOWN" : " · all UP")));
    g.append(h);
    for (const region of [...regions.keys()].sort()) {
      let list = regions.get(region);
      const total = list.length;
      if (limited) list = list.filter((s) => s.status !== "UP");
      list.sort((a, b) => a.host.localeCompare(b.host));
      const r = el("div", "region");
      r.append(el("h3", null, region || "no region"));
      if (!list.length) {
        r.append(el("p", "all-up", "all " + total + " UP"));
        g.append(r);
        continue;
      }
      const t = el("table");
      const cols = el("colgroup");
      for (const c of ["host", "status", "why", "uuid"]) cols.append(el("col", "c-" + c));
      t.append(cols);
      const head = el("thead");
      const hr = el("tr");
      for (const c of ["Host", "Status", "Why", "UUID"]) hr.append(el("th", null, c));
      head.append(hr);
      t.append(head);
      const body = el("tbody");
      for (const s of list) {
        const tr = el("tr");
        tr.dataset.uuid = s.uuid;
        tr.dataset.status = s.status;
        if (now - (changed.get(s.uuid) || 0) < 2.5) tr.className = "changed";
        tr.append(el("td", "host", s.host));
        const st = el("td", "status");
        st.append(el("span", "pill " + s.status + (s.why === "forced" ? " forced" : ""), statusText(s)));
        tr.append(st);
        tr.append(el("td", "why", whyText(s)));
        const u = el("td", "uuid", s.uuid);
        u.title = s.uuid;
        tr.append(u);
        body.append(tr);
      }
      t.append(body);
      r.append(t);
      g.append(r);
    }
    out.push(g);
  }
  const groups = $("groups");
  groups.replaceChildren(...out);
  if (!byType.size) groups.append(el("p", "empty", services.size ? "No service matches the filter." : "No service registered."));

  // Last events.
  const ol = $("events");
  ol.replaceChildren();
  for (const e of events.slice(0, 60)) {
    const li = el("li");
    li.append(el("span", "t", clock(e.time)));
    const what = e.reason ? e.event + " (" + e.reason + ")" : e.event;
    const cls = e.event === "down" ? "down" : (e.event === "up" || e.event === "registered") ? "up" : "";
    li.append(el("span", "what " + cls, what));
    li.append(el("span", "who", (e.type ? e.type + "@" + e.host : "") + (e.region ? " · " + e.region : "") +
      (e.old_status || e.new_status ? " · " + (e.old_status || "–") + " → " + (e.new_status || "–") : "")));
    ol.append(li);
  }
  if (!events.length) ol.append(el("li", "empty", "None since the exporter started."));
}

function apply(e) {
  if (e.event === "resync" || !e.uuid) return;
  if (e.event === "removed" && e.reason !== "moved") services.delete(e.uuid);
  else if (e.service) {
    const s = Object.assign({}, e.service, { status: e.new_status || "DOWN", why: e.why });
    services.set(e.uuid, s);
  }
  changed.set(e.uuid, Date.now() / 1000);
}

function health(h) {
  $("rev").textContent = h.revision;
  if (h.connected) setLink("live", "live");
  else setLink("stale", "etcd unreachable: showing the last known state");
}

function connect() {
  if (source) source.close();
  source = new EventSource("api/events?snapshot=1");
  source.addEventListener("snapshot", (m) => {
    const snap = JSON.parse(m.data);
    services.clear();
    for (const s of snap.services) services.set(s.uuid, s);
    snapshotRevision = snap.revision;
    events = snap.events.slice().reverse();
    health(snap.health);
    schedule();
  });
  source.addEventListener("health", (m) => health(JSON.parse(m.data)));
  source.addEventListener("lagged", () => connect());
  source.onmessage = (m) => {
    const e = JSON.parse(m.data);
    events.unshift(e);
    if (events.length > 200) events.length = 200;
    if (e.revision > snapshotRevision) apply(e);
    $("rev").textContent = Math.max(e.revision, Number($("rev").textContent) || 0);
    schedule();
  };
  source.onopen = () => { if ($("link").dataset.state !== "stale") setLink("live", "live"); };
  source.onerror = () => setLink("lost", "reconnecting to the exporter…");
}

document.addEventListener("DOMContentLoaded", () => {
  $("filter").addEventListener("input", schedule);
  $("only-down").addEventListener("change", schedule);
  connect();
  // Row flashes fade by themselves (CSS); nothing polls.
});
