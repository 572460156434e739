// What every browser scenario shares: Debian's Chromium through playwright-core (no browser
// download), a step wrapper that names what failed, and a watch for console errors and failed
// requests.
import { execFileSync } from "node:child_process";

import { chromium } from "playwright-core";

export async function launch() {
  return chromium.launch({
    executablePath: process.env.FERRY_CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    // Chromium's own background connections are refused by these machines' closed network.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

export async function step(name, body) {
  const started = Date.now();
  try {
    await body();
  } catch (e) {
    throw new Error(`step "${name}" failed: ${e?.message ?? e}`);
  }
  console.log(JSON.stringify({ step: name, ms: Date.now() - started }));
}

/** Collects console errors, page errors, failed requests and error answers, but those
 * `expected` accepts (a refusal the scenario asks for). */
export function watchPage(page, expected = []) {
  const problems = [];
  page.on("console", (m) => {
    // Chromium logs every error answer too; those are judged below, by the response.
    if (m.type() === "error" && !m.text().includes("the server responded with a status of")) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => {
    // A request the page gave up on itself (a navigation away while a poll was in flight) is
    // cancelled, not failed: Chromium reports net::ERR_ABORTED. A server that closes or refuses
    // the connection gives another error, which fails the scenario.
    if (r.failure()?.errorText === "net::ERR_ABORTED") return;
    problems.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && !expected.some((ok) => ok(r))) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  return problems;
}

/** Runs `statement` in the test's source database as the admin (`FERRY_MARIADB`, `FERRY_SOURCE`). */
export function sourceSql(statement) {
  const admin = JSON.parse(process.env.FERRY_MARIADB);
  const source = JSON.parse(process.env.FERRY_SOURCE);
  execFileSync("mariadb", ["-h", admin.host, "-P", String(admin.port), "-u", admin.user, `-p${admin.password}`, source.database, "-e", statement]);
}

/** Waits until `probe()` says done, failing only when what it reads (`at`) has not changed for
 * `stallMs`: a slower machine takes longer instead of failing (the Rust tests' `progressing`).
 * `probe` returns `{ done, at }`. */
export async function progressing(what, probe, stallMs = 90_000) {
  let last;
  let since = Date.now();
  for (;;) {
    const { done, at } = await probe();
    if (done) return;
    if (at !== last) {
      last = at;
      since = Date.now();
    } else if (Date.now() - since > stallMs) {
      throw new Error(`waiting for ${what}: nothing advanced for ${stallMs / 1000} s; last seen: ${at}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The text of the first element matching `selector` on `page` ("" when none). */
export async function textOf(page, selector) {
  const l = page.locator(selector).first();
  return (await l.count()) ? ((await l.textContent()) ?? "").trim() : "";
}

/** Form controls on `page` a keyboard or screen-reader user cannot name: inputs, selects and
 * text areas without a label, buttons and links without text or a label. */
export async function unlabelled(page) {
  return page.evaluate(() => {
    const named = (el) => (el.getAttribute("aria-label") ?? "").trim() || el.getAttribute("aria-labelledby");
    const out = [];
    for (const el of document.querySelectorAll("input, select, textarea")) {
      if (el.type === "hidden") continue;
      if (!(el.labels && el.labels.length) && !named(el)) out.push(el.outerHTML.slice(0, 120));
    }
    for (const el of document.querySelectorAll("button, a[href]")) {
      if (!(el.textContent ?? "").trim() && !named(el) && !el.getAttribute("title")) out.push(el.outerHTML.slice(0, 120));
    }
    return out;
  });
}

/** Presses Tab until the focused control's label is `label` (at most `max` presses): how a
 * keyboard user reaches it. */
export async function tabTo(page, label, max = 120) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    const at = await page.evaluate(() => {
      const el = document.activeElement;
      return el?.labels?.[0]?.textContent?.trim() ?? el?.getAttribute?.("aria-label") ?? el?.textContent?.trim() ?? "";
    });
    if (at === label) return;
  }
  throw new Error(`"${label}" is not reachable with Tab within ${max} presses`);
}

/** How many pixels `page` is wider than its viewport (0: it fits). */
export async function overflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}
