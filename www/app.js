// The swre demo: a SwrCache over IndexedDB in front of a simulated upstream.
import { SwrCache } from "swre";

const $ = (id) => document.getElementById(id);
const counters = { hit: 0, stale: 0, miss: 0, fallback: 0, error: 0, expired: 0, upstream: 0 };
let cache = null;
let opening = null;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The upstream: slow, numbered answers, can be switched off.
async function upstream(key) {
  counters.upstream += 1;
  render();
  const n = counters.upstream;
  await sleep(Number($("latency").value) || 0);
  if ($("fail").checked) throw new Error("upstream answered 503");
  return { key, answer: `response #${n}`, fetchedAt: new Date().toLocaleTimeString() };
}

function ttls() {
  return { fresh: Number($("fresh").value), stale: Number($("stale").value), expired: Number($("expired").value) };
}

async function open() {
  setReady("loading", "opening the cache…");
  const previous = cache;
  cache = null;
  const t = ttls();
  localStorage.setItem("swre-demo-ttl", JSON.stringify(t));
  opening = SwrCache.open({ name: "swre-demo", storage: "indexeddb", ...t, maxEntries: 1000, refreshTimeout: 10_000 });
  try {
    cache = await opening;
    previous?.close();
    setReady("ready", "ready — press get");
  } catch (e) {
    setReady("error", e.message);
  }
}

function setReady(state, text) {
  $("ready").dataset.state = state;
  $("ready").textContent = text;
}

function render() {
  for (const k of ["hit", "stale", "miss", "fallback", "error", "upstream"]) $(`c-${k}`).textContent = counters[k];
}

function addRow(status, value, age, latencyMs) {
  const li = document.createElement("li");
  li.dataset.status = status;
  const time = new Date().toLocaleTimeString();
  li.innerHTML = `<span class="meta"></span><span class="status"></span><span class="value"></span><span class="meta"></span><span class="meta"></span>`;
  const [t, s, v, a, l] = li.children;
  t.textContent = time;
  s.textContent = status;
  v.textContent = typeof value === "string" ? value : JSON.stringify(value);
  a.textContent = age === null ? "" : `age ${(age / 1000).toFixed(1)} s`;
  l.textContent = `${latencyMs.toFixed(0)} ms`;
  $("timeline").prepend(li);
}

async function get() {
  if (!cache) await opening;
  const key = $("key").value;
  const started = performance.now();
  try {
    const r = await cache.get(key, () => upstream(key));
    counters[r.status] += 1;
    addRow(r.status, r.value, r.age, performance.now() - started);
  } catch (e) {
    counters.error += 1;
    addRow("error", e.message, null, performance.now() - started);
  }
  render();
  drawBar();
}

async function drawBar() {
  if (!cache) return;
  const entry = await cache.peek($("key").value);
  const marker = $("marker");
  if (!entry) {
    marker.style.display = "none";
    $("phase").textContent = "no entry (or gone): the next get is a miss";
    for (const s of ["fresh", "stale", "expired"]) $(`seg-${s}`).style.flex = "1";
    return;
  }
  const total = entry.expiresAt - entry.createdAt || 1;
  const parts = { fresh: entry.freshUntil - entry.createdAt, stale: entry.staleUntil - entry.freshUntil, expired: entry.expiresAt - entry.staleUntil };
  // Show the long expired tail compressed so fresh and stale stay visible.
  const shown = { fresh: parts.fresh, stale: parts.stale, expired: Math.min(parts.expired, (parts.fresh + parts.stale) * 1.5 || 1) };
  const shownTotal = shown.fresh + shown.stale + shown.expired;
  for (const s of ["fresh", "stale", "expired"]) $(`seg-${s}`).style.flex = String(Math.max(shown[s], 1));
  const age = Date.now() - entry.createdAt;
  let pos;
  if (age < parts.fresh) pos = age / parts.fresh * shown.fresh;
  else if (age < parts.fresh + parts.stale) pos = shown.fresh + (age - parts.fresh) / parts.stale * shown.stale;
  else pos = shown.fresh + shown.stale + Math.min(1, (age - parts.fresh - parts.stale) / parts.expired) * shown.expired;
  marker.style.display = "block";
  marker.style.left = `calc(${(pos / shownTotal) * 100}% - 1px)`;
  const remaining = (until) => ((until - Date.now()) / 1000).toFixed(1);
  $("phase").textContent =
    entry.status === "hit" ? `fresh for ${remaining(entry.freshUntil)} s more` :
    entry.status === "stale" ? `stale: served instantly, refreshed in background (${remaining(entry.staleUntil)} s left)` :
    `expired: kept as a fallback for ${remaining(entry.expiresAt)} s`;
  void total;
}

// Two tabs, one refresh: every open tab of this page asks for one new key at
// once (told over a BroadcastChannel of the demo's own); the tab holding the
// key's Web Lock calls upstream, the others wait for the value it stores.
const tab = Math.random().toString(36).slice(2, 6);
const tabs = "BroadcastChannel" in self ? new BroadcastChannel("swre-demo-tabs") : null;
/** The latest round: its key, and each tab's answer. */
let round = { key: null, answers: [] };

async function getInThisTab(key) {
  if (!cache) await opening;
  const started = performance.now();
  let fetched = false;
  let answer;
  try {
    const r = await cache.get(key, async () => {
      fetched = true;
      await sleep(Number($("latency").value) || 0);
      return { key, fetchedBy: `tab ${tab}` };
    });
    answer = { key, tab, fetched, value: r.value.fetchedBy, ms: performance.now() - started };
  } catch (e) {
    answer = { key, tab, fetched, value: e.message, ms: performance.now() - started };
  }
  tabs?.postMessage({ type: "answer", ...answer });
  showAnswer(answer);
}

function showAnswer(a) {
  if (a.key !== round.key) round = { key: a.key, answers: [] };
  round.answers.push(a);
  if (a.key !== $("tabs-log").dataset.key) {
    $("tabs-log").dataset.key = a.key;
    $("tabs-log").replaceChildren();
  }
  const li = document.createElement("li");
  li.dataset.fetched = String(a.fetched);
  li.innerHTML = `<span class="status"></span><span class="value"></span><span class="meta"></span>`;
  const [who, what, ms] = li.children;
  who.textContent = a.tab === tab ? `tab ${a.tab} (this)` : `tab ${a.tab}`;
  what.textContent = a.fetched ? "called upstream" : `waited for ${a.value}`;
  ms.textContent = `${a.ms.toFixed(0)} ms`;
  $("tabs-log").append(li);
  $("tabs-answers").textContent = round.answers.length;
  $("tabs-upstream").textContent = round.answers.filter((x) => x.fetched).length;
}

tabs?.addEventListener("message", (e) => {
  if (e.data?.type === "go") getInThisTab(e.data.key);
  else if (e.data?.type === "answer") showAnswer(e.data);
});

function getInEveryTab() {
  const key = `shared:${Date.now()}`;
  tabs?.postMessage({ type: "go", key });
  getInThisTab(key);
}

async function main() {
  const saved = JSON.parse(localStorage.getItem("swre-demo-ttl") ?? "null");
  if (saved) for (const k of ["fresh", "stale", "expired"]) $(k).value = saved[k];
  const savedKey = localStorage.getItem("swre-demo-key");
  if (savedKey) $("key").value = savedKey;
  await open();
  for (const id of ["fresh", "stale", "expired"]) $(id).addEventListener("change", open);
  $("get").addEventListener("click", get);
  $("tabs-get").addEventListener("click", getInEveryTab);
  $("tabs-open").addEventListener("click", () => window.open(location.href, "_blank"));
  $("forget").addEventListener("click", async () => { await cache.delete($("key").value); drawBar(); });
  $("key").addEventListener("input", () => {
    localStorage.setItem("swre-demo-key", $("key").value);
    drawBar();
  });
  setInterval(drawBar, 200);
  render();
  drawBar();
}

main().catch((e) => setReady("error", String(e)));
