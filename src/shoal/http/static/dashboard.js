// shoal dashboard: renders the scheduler's live snapshots (server-sent events from
// /api/v1/stream, one compact JSON object about every 500 ms). No dependencies.
"use strict";

const WINDOW = 15; // seconds of task stream shown
const MAX_SPANS = 20000; // task spans kept in the page
// well-separated hues; red is kept for errors and transfers
const PALETTE = [
  "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948",
  "#9c755f", "#ff9da7", "#3b5b92", "#8cd17d", "#bab0ac", "#d4a6c8",
];
const COLOURS = new Map(); // prefix -> colour, in order of first appearance

const state = {
  spans: [], // [prefix, worker, start, stop]
  transfers: [], // [worker, sender, nbytes, start, stop]
  workers: [],
  now: 0,
  rate: [], // [time, finished_total] samples for tasks/s
};

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function colour(prefix) {
  if (!COLOURS.has(prefix)) COLOURS.set(prefix, PALETTE[COLOURS.size % PALETTE.length]);
  return COLOURS.get(prefix);
}

function bytes(n) {
  const units = ["B", "kiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : 1) : n.toFixed(0)) + "\u00a0" + units[i];
}

// -- workers ------------------------------------------------------------------------------
function renderWorkers(workers) {
  const body = $("workers").querySelector("tbody");
  body.replaceChildren();
  const scale = Math.max(1, ...workers.map(
    (w) => w.memory_limit || (w.memory.process + w.memory.spilled)));
  for (const w of workers) {
    const m = w.memory;
    const limit = w.memory_limit || scale;
    const pct = (x) => Math.min(100, (100 * x) / limit).toFixed(2) + "%";
    const slots = el("div", { class: "slots", title: w.running.join("\n") });
    for (let i = 0; i < w.nthreads; i++) {
      slots.append(el("span", { class: i < w.executing ? "slot busy" : "slot" }));
    }
    const bar = el("div", { class: "bar" },
      el("span", { class: "managed", style: `width:${pct(m.managed)}` }),
      el("span", { class: "unmanaged", style: `width:${pct(m.unmanaged)}` }),
      el("span", { class: "spilled", style: `width:${pct(m.spilled)}` }));
    if (w.memory_limit) bar.append(el("span", { class: "limit" }));
    const text = `${bytes(m.managed)}\u00a0managed · ${bytes(m.unmanaged)}\u00a0unmanaged · ` +
      `${bytes(m.spilled)}\u00a0spilled` +
      (w.memory_limit ? ` / ${bytes(w.memory_limit)}\u00a0limit` : "");
    body.append(el("tr", { "data-worker": w.address, class: "worker" },
      el("td", { class: "name" }, el("b", {}, w.name), el("small", {}, w.address)),
      el("td", { class: "threads" }, w.nthreads),
      el("td", {}, slots),
      el("td", { class: "processing" }, w.processing),
      el("td", { class: "keys" }, w.in_memory),
      el("td", {}, bar, el("div", { class: "memtext" }, text))));
  }
  $("no-workers").classList.toggle("hidden", workers.length > 0);
  $("n-workers").textContent = workers.length;
  $("n-threads").textContent = workers.reduce((a, w) => a + w.nthreads, 0);
}

// -- progress -----------------------------------------------------------------------------
function renderProgress(progress) {
  const box = $("progress");
  box.replaceChildren();
  const names = Object.keys(progress).sort();
  for (const prefix of names) {
    const [waiting, processing, memory, erred] = progress[prefix];
    const total = waiting + processing + memory + erred;
    const pct = (x) => (total ? (100 * x) / total : 0).toFixed(2) + "%";
    const c = colour(prefix);
    const bar = el("div", { class: "pbar" },
      el("span", { class: "memory", style: `width:${pct(memory)};background:${c}` }),
      el("span", { class: "processing",
        style: `width:${pct(processing)};background:${c};opacity:.45` }),
      el("span", { class: "erred", style: `width:${pct(erred)}` }));
    const counts = `${memory} / ${total}` + (erred ? ` · ${erred} erred` : "");
    box.append(el("div", {
      class: "prefix-row", "data-prefix": prefix, "data-waiting": waiting,
      "data-processing": processing, "data-memory": memory, "data-erred": erred,
    },
    el("div", { class: "prefix-name", title: prefix },
      el("i", { style: `background:${c}` }), prefix),
    bar, el("div", { class: "counts" }, counts)));
  }
  $("no-tasks").classList.toggle("hidden", names.length > 0);
}

// -- task stream --------------------------------------------------------------------------
function addSpans(spans, transfers, now) {
  state.spans.push(...spans);
  state.transfers.push(...transfers);
  const horizon = now - WINDOW;
  const keepFrom = (list, stopIndex) => {
    let i = 0;
    while (i < list.length && list[i][stopIndex] < horizon) i++;
    return list.slice(Math.max(i, list.length - MAX_SPANS));
  };
  state.spans = keepFrom(state.spans, 3);
  state.transfers = keepFrom(state.transfers, 4);
}

function lanesFor(workers) {
  // one lane per thread, workers in the order the scheduler lists them
  const lanes = new Map();
  let row = 0;
  for (const w of workers) {
    lanes.set(w.address, { first: row, n: Math.max(1, w.nthreads), ends: [] , name: w.name });
    row += Math.max(1, w.nthreads);
  }
  return { lanes, rows: row };
}

function renderStream() {
  const canvas = $("stream");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const { lanes, rows } = lanesFor(state.workers);
  const left = 110, top = 6, bottom = 20;
  const plotW = width - left - 10, rowH = rows ? (height - top - bottom) / rows : 0;
  const now = state.now, start = now - WINDOW;
  const x = (t) => left + ((t - start) / WINDOW) * plotW;
  // axes and lane labels
  ctx.fillStyle = "#6b7280";
  ctx.font = "11px system-ui, sans-serif";
  for (let s = 0; s <= WINDOW; s += 5) {
    const px = x(start + s);
    ctx.fillRect(px, top, 1, height - top - bottom);
    ctx.fillText(s === WINDOW ? "now" : `-${WINDOW - s}s`, px - 10, height - 5);
  }
  for (const lane of lanes.values()) {
    const y = top + lane.first * rowH;
    ctx.fillStyle = "#1f2430";
    ctx.fillText(lane.name.slice(0, 14), 6, y + Math.min(rowH * lane.n, 24) / 2 + 4);
    ctx.fillStyle = "#e5e7eb";
    ctx.fillRect(left, y + lane.n * rowH - 1, plotW, 1);
  }
  // tasks: each in the first free thread lane of its worker
  for (const lane of lanes.values()) lane.ends = new Array(lane.n).fill(-Infinity);
  for (const [prefix, worker, a, b] of state.spans) {
    const lane = lanes.get(worker);
    if (!lane || b < start) continue;
    let i = lane.ends.findIndex((end) => end <= a + 1e-4);
    if (i < 0) i = lane.ends.indexOf(Math.min(...lane.ends));
    lane.ends[i] = b;
    const y = top + (lane.first + i) * rowH;
    ctx.fillStyle = colour(prefix);
    ctx.fillRect(x(a), y + 1, Math.max(1, x(b) - x(a)), Math.max(1, rowH - 3));
  }
  ctx.fillStyle = getComputedStyle(document.body).getPropertyValue("--transfer") || "#e0542f";
  for (const [worker, , , a, b] of state.transfers) {
    const lane = lanes.get(worker);
    if (!lane || b < start) continue;
    const y = top + lane.first * rowH;
    ctx.fillRect(x(a), y + 1, Math.max(2, x(b) - x(a)), Math.max(2, rowH * lane.n - 3));
  }
  const seen = [...new Set(state.spans.map((s) => s[0]))].sort();
  $("stream-prefixes").replaceChildren(...seen.map(
    (p) => el("span", {}, el("i", { style: `background:${colour(p)}` }), p)));
}

// -- header -------------------------------------------------------------------------------
function renderHeader(snap) {
  $("scheduler").textContent = snap.scheduler;
  $("n-finished").textContent = snap.finished_total.toLocaleString();
  $("lag").textContent = `${(snap.loop_lag * 1000).toFixed(1)} ms`;
  state.rate.push([snap.time, snap.finished_total]);
  while (state.rate.length > 2 && snap.time - state.rate[0][0] > 3) state.rate.shift();
  const [t0, n0] = state.rate[0];
  const rate = snap.time > t0 ? (snap.finished_total - n0) / (snap.time - t0) : 0;
  $("rate").textContent = Math.round(rate).toLocaleString();
}

function render(snap) {
  state.now = snap.time;
  snap.workers.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  state.workers = snap.workers;
  Object.keys(snap.progress).sort().forEach(colour); // stable colours for a page's life
  addSpans(snap.stream, snap.transfers, snap.time);
  renderHeader(snap);
  renderWorkers(snap.workers);
  renderProgress(snap.progress);
  renderStream();
}

function setLive(on, text) {
  $("dot").className = on ? "dot on" : "dot off";
  $("status").textContent = text;
}

async function start() {
  $("window").textContent = WINDOW;
  try { // the recent past, so that a page opened mid-run shows it too
    const history = await (await fetch("/api/v1/task-stream?n=5000")).json();
    state.spans = history.tasks.map((t) => [t.prefix, t.worker, t.start, t.stop]);
    state.transfers = history.transfers.map(
      (t) => [t.worker, t.sender, t.nbytes, t.start, t.stop]);
  } catch (err) { /* the live feed still works */ }
  const source = new EventSource("/api/v1/stream");
  source.onmessage = (event) => { setLive(true, "live"); render(JSON.parse(event.data)); };
  source.onerror = () => setLive(false, "reconnecting");
}

window.addEventListener("resize", renderStream);
start();
