// The live page: one card per store, kept current by the push stream (EventSource reconnects by
// itself and resumes with Last-Event-ID). Built with DOM calls only: no answer text is ever
// parsed as HTML.
"use strict";

const HISTORY = 40; // sparkline points per store
const one = location.pathname.match(/^\/stores\/([0-9]+)$/);
const storeId = one ? Number(one[1]) : null;
const stores = new Map(); // id -> { card, history: [minutes] }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function fmt(x, digits) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

function card(id) {
  const line = svg("polyline", { points: "" });
  const spark = svg("svg", { class: "spark", viewBox: "0 0 100 20", preserveAspectRatio: "none",
                             "aria-label": "recent wait times" });
  spark.append(line);
  const c = el("article", { class: "store", "data-store-id": String(id) },
    el("h2", {}, el("a", { href: "/stores/" + id }, "Store " + id),
       el("span", { class: "basis" })),
    el("p", { class: "wait" }, el("span", { class: "minutes" }, "–"),
       el("span", { class: "unit" }, "min")),
    el("dl", {},
      el("dt", {}, "p50 / p90"), el("dd", { class: "percentiles" }),
      el("dt", {}, "open orders"), el("dd", { class: "open-orders" }),
      el("dt", {}, "observations"), el("dd", { class: "observations" })),
    spark,
    el("p", { class: "updated" }));
  return c;
}

function place(id, c) {
  const list = document.getElementById("stores");
  const after = [...list.children].find((n) => Number(n.dataset.storeId) > id);
  list.insertBefore(c, after || null);
  document.getElementById("empty").hidden = true;
}

function sparkline(line, history) {
  const values = history.filter((v) => v !== null);
  if (values.length === 0) { line.setAttribute("points", ""); return; }
  const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
  const step = history.length > 1 ? 100 / (history.length - 1) : 0;
  const points = [];
  history.forEach((v, i) => {
    if (v !== null) points.push((i * step).toFixed(1) + "," + (18 - ((v - lo) / span) * 16).toFixed(1));
  });
  if (points.length === 1) points.push("100," + points[0].split(",")[1]);
  line.setAttribute("points", points.join(" "));
}

function show(w) {
  let s = stores.get(w.store_id);
  if (!s) {
    s = { card: card(w.store_id), history: [] };
    stores.set(w.store_id, s);
    place(w.store_id, s.card);
  }
  const c = s.card;
  const minutes = w.wait_time_minutes;
  const shown = c.querySelector(".minutes");
  const changed = shown.textContent !== fmt(minutes, 0);
  shown.textContent = fmt(minutes, 0);
  const basis = c.querySelector(".basis");
  basis.textContent = w.basis;
  basis.dataset.basis = w.basis;
  c.querySelector(".percentiles").textContent = fmt(w.p50_minutes, 1) + " / " + fmt(w.p90_minutes, 1) + " min";
  c.querySelector(".open-orders").textContent = String(w.open_orders);
  c.querySelector(".observations").textContent = String(w.observations);
  c.querySelector(".updated").textContent = w.updated_at ? "stream time " + w.updated_at : "prior value, no events yet";
  s.history.push(minutes);
  if (s.history.length > HISTORY) s.history.shift();
  sparkline(c.querySelector("polyline"), s.history);
  if (changed) {
    c.classList.add("changed");
    setTimeout(() => c.classList.remove("changed"), 800);
  }
}

function forget(id) {
  const s = stores.get(id);
  if (!s) return;
  s.card.remove();
  stores.delete(id);
  document.getElementById("empty").hidden = stores.size > 0;
}

function status(state, text) {
  const s = document.getElementById("status");
  s.dataset.state = state;
  s.textContent = text;
}

function connect() {
  if (storeId !== null) {
    document.getElementById("title").textContent = "Store " + storeId + " wait time";
    document.getElementById("empty").textContent = "Store " + storeId + " has no answer yet.";
    document.title = "waittimes: store " + storeId;
  }
  const url = "/stores/stream" + (storeId !== null ? "?ids=" + storeId : "");
  const source = new EventSource(url);
  source.addEventListener("open", () => status("live", "live"));
  source.addEventListener("error", () => status("reconnecting", "reconnecting…"));
  source.addEventListener("wait", (e) => show(JSON.parse(e.data)));
  source.addEventListener("removed", (e) => forget(JSON.parse(e.data).store_id));
}

connect();
