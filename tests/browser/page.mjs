// Drives the live page in the system's headless Chromium (playwright-core, no browser
// download), talking to the integration test over stdin/stdout, one JSON object per line.
//
//   node page.mjs BASE_URL STORE_ID [SCREENSHOT.png]
//
// 1. Opens BASE_URL/ on a phone-sized viewport, waits until the store's card shows a minute,
//    prints {"loaded": "<minutes>", "stores": [ids], "overflow": bool}.
// 2. Waits for a line on stdin (the test has produced a change to Kafka and names the minute the
//    service now answers; end of input: any other minute), then waits until the card shows it,
//    prints {"changed": "<minutes>", "reloads": n}.
// 3. Optionally saves a screenshot of the page, then exits 0. Any failure exits 1 with a reason.
//
// WAITTIMES_TEST_CHROMIUM overrides the browser (default: chromium on PATH); PAGE_VIEWPORT=WxH
// the phone-sized 390x844 (the README's screenshot is taken at 1100x760).
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { execFileSync } from "node:child_process";

const [base, store, screenshot] = process.argv.slice(2);
if (!base || !store) {
  console.error("usage: node page.mjs BASE_URL STORE_ID [SCREENSHOT.png]");
  process.exit(2);
}
const WAIT_MS = 30_000; // a safety net only; the change normally shows within a second

function chromiumPath() {
  if (process.env.WAITTIMES_TEST_CHROMIUM) return process.env.WAITTIMES_TEST_CHROMIUM;
  try {
    return execFileSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" }).trim();
  } catch {
    throw new Error("no chromium on PATH (apt-get install chromium) and WAITTIMES_TEST_CHROMIUM unset");
  }
}

const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const browser = await chromium.launch({
  executablePath: chromiumPath(),
  // As root (CI) Chromium refuses to start sandboxed.
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const [width, height] = (process.env.PAGE_VIEWPORT || "390x844").split("x").map(Number);
  const context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  let loads = 0;
  page.on("load", () => { loads += 1; });

  await page.goto(base + "/", { waitUntil: "load" });
  const minutes = page.locator(`[data-store-id="${store}"] .minutes`);
  await page.waitForFunction(
    (sel) => { const e = document.querySelector(sel); return e && /^[0-9]+$/.test(e.textContent); },
    `[data-store-id="${store}"] .minutes`,
    { timeout: WAIT_MS },
  );
  const loaded = await minutes.textContent();
  const stores = await page.locator("[data-store-id]").evaluateAll((els) => els.map((e) => Number(e.dataset.storeId)));
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  say({ loaded, stores, overflow, status: await page.locator("#status").textContent() });

  const next = await lines.next();
  const expected = next.done ? null : next.value.trim();
  await page.waitForFunction(
    ([sel, before, want]) => {
      const e = document.querySelector(sel);
      if (!e || !/^[0-9]+$/.test(e.textContent)) return false;
      return want ? e.textContent === want : e.textContent !== before;
    },
    [`[data-store-id="${store}"] .minutes`, loaded, expected],
    { timeout: WAIT_MS },
  );
  const changed = await minutes.textContent();
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  say({ changed, reloads: loads - 1 });
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
} catch (e) {
  console.error(String(e && e.stack || e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
// stdin stays open (the readline interface), so leave explicitly.
process.exit(process.exitCode ?? 0);
