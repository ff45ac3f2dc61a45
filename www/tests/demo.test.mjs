// The demo page end to end in headless Chromium (playwright-core driving
// Debian's /usr/bin/chromium): statuses and counters through a whole
// miss → hit → stale → hit → fallback → miss cycle, then a reload that is
// answered from IndexedDB; and two tabs sharing one refresh (Web Locks).
// Saves screenshots in www/screenshots/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { start } from "../serve.mjs";
import { CHROMIUM } from "./chromium.mjs";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
let server, context, profile;

before(async () => {
  server = await start(0);
  profile = await mkdtemp(path.join(os.tmpdir(), "swre-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    ...CHROMIUM,
    viewport: { width: 1200, height: 900 },
  });
});

after(async () => {
  await context?.close();
  await server?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function ready(page) {
  await page.waitForSelector('#ready[data-state="ready"]', { timeout: 20_000 });
}

async function setField(page, id, value) {
  await page.fill(`#${id}`, String(value));
  await page.dispatchEvent(`#${id}`, "change");
  await ready(page);
}

async function clickGet(page) {
  const before = await page.locator("#timeline li").count();
  await page.click("#get");
  await page.waitForFunction((n) => document.querySelectorAll("#timeline li").length > n, before, { timeout: 15_000 });
  return page.locator("#timeline li").first().getAttribute("data-status");
}

async function counters(page) {
  const read = async (k) => Number(await page.textContent(`#c-${k}`));
  return { hit: await read("hit"), stale: await read("stale"), miss: await read("miss"), fallback: await read("fallback"), upstream: await read("upstream") };
}

test("the demo page shows each status, counts them, and survives a reload through IndexedDB", async () => {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(server.url);
  await ready(page);
  assert.equal(await page.title(), "swre — stale-while-revalidate, live");

  const key = `e2e:${Date.now()}`;
  await page.fill("#key", key);
  await page.fill("#latency", "200");
  await setField(page, "fresh", 1500);
  await setField(page, "stale", 1500);
  await setField(page, "expired", 60000);

  const seen = [];
  seen.push(await clickGet(page)); // cold: miss
  seen.push(await clickGet(page)); // fresh: hit
  await sleep(1700);
  seen.push(await clickGet(page)); // stale: served at once, refreshed in background
  await sleep(700);
  seen.push(await clickGet(page)); // the refreshed value: hit
  await page.check("#fail");
  await sleep(3300);
  seen.push(await clickGet(page)); // expired and upstream down: fallback
  await page.uncheck("#fail");
  await setField(page, "fresh", 30000);
  seen.push(await clickGet(page)); // expired, upstream back: miss
  assert.deepEqual(seen, ["miss", "hit", "stale", "hit", "fallback", "miss"]);
  assert.deepEqual(await counters(page), { hit: 2, stale: 1, miss: 2, fallback: 1, upstream: 4 });
  assert.match(await page.textContent("#phase"), /fresh for/);

  await mkdir(path.join(root, "screenshots"), { recursive: true });
  await page.screenshot({ path: path.join(root, "screenshots", "demo.png"), fullPage: true });

  await page.reload();
  await ready(page);
  assert.equal(await page.inputValue("#key"), key, "the page remembers its key");
  assert.equal(await clickGet(page), "hit", "after a reload the value comes from IndexedDB");
  assert.deepEqual(await counters(page), { hit: 1, stale: 0, miss: 0, fallback: 0, upstream: 0 });
  await page.screenshot({ path: path.join(root, "screenshots", "demo-after-reload.png"), fullPage: true });
  assert.deepEqual(errors, []);
});

test("two tabs of the demo share one refresh: one upstream call, the other tab waits for its value", async () => {
  const tabs = [await context.newPage(), await context.newPage()];
  // Only these two tabs of the demo are open (every open tab answers).
  for (const page of context.pages()) if (!tabs.includes(page)) await page.close();
  const errors = [];
  for (const page of tabs) {
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(server.url);
    await ready(page);
    await page.fill("#latency", "300");
  }
  await tabs[0].click("#tabs-get");
  const rows = [];
  for (const page of tabs) {
    await page.waitForFunction(() => document.querySelectorAll("#tabs-log li").length === 2, null, { timeout: 15_000 });
    assert.equal(await page.textContent("#tabs-answers"), "2");
    assert.equal(await page.textContent("#tabs-upstream"), "1", "upstream calls across the two tabs");
    rows.push(await page.locator("#tabs-log li").evaluateAll((lis) => lis.map((li) => li.dataset.fetched).sort()));
  }
  assert.deepEqual(rows, [["false", "true"], ["false", "true"]]);
  // The page's own counters are about its own key: untouched.
  for (const page of tabs) assert.equal(await page.textContent("#c-upstream"), "0");
  await tabs[1].screenshot({ path: path.join(root, "screenshots", "demo-two-tabs.png"), fullPage: true });
  for (const page of tabs) await page.close();
  assert.deepEqual(errors, []);
});
