// The data-synchronization procedure in a real browser, run by
// tests/integration/tests/console.rs with the variables of tracking.mjs and
//   FERRY_TARGET   {"engine", "host", "port", "username", "password", "database"}: PostgreSQL
// The source database holds `orders` (thousands of rows) and `items`.
import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { launch, overflow, progressing, sourceSql as sql, step, textOf, unlabelled, watchPage } from "./browser.mjs";

const url = process.env.FERRY_CONSOLE_URL;
const source = JSON.parse(process.env.FERRY_SOURCE);
const target = JSON.parse(process.env.FERRY_TARGET);
const shots = process.env.FERRY_SCREENSHOTS;
if (shots) mkdirSync(shots, { recursive: true });

const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const problems = watchPage(page);
const shot = async (name) => {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
};
const field = (name) => page.locator(`[name="${name}"]`);

try {
  await step("a sync instance is created", async () => {
    await page.goto(url);
    await page.getByRole("button", { name: "Create instance" }).click();
    await page.getByLabel("Name").fill("orders-copy");
    await page.getByLabel("Mode").selectOption("sync");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { name: "orders-copy" }).waitFor();
  });

  await step("source, objects and PostgreSQL target are configured", async () => {
    await field("source-host").fill(source.host);
    await field("source-port").fill(String(source.port));
    await field("source-username").fill(source.username);
    await field("source-password").fill(source.password);
    await page.getByRole("button", { name: "Load the source's objects" }).click();
    await page.locator(`input[name="table-${source.database}.orders"]`).check();
    await field("target-engine").selectOption("postgresql");
    await field("target-host").fill(target.host);
    await field("target-port").fill(String(target.port));
    await field("target-username").fill(target.username);
    await field("target-password").fill(target.password);
    await field("target-database").fill(target.database);
    await page.getByRole("button", { name: "Save configuration" }).click();
    await page.getByText("Saved.").waitFor();
    await page.getByRole("button", { name: "Run precheck" }).click();
    await page.getByTestId("precheck-result").filter({ hasText: "Precheck passed" }).waitFor({ timeout: 60_000 });
    await page.getByRole("button", { name: "Start" }).click();
  });

  await step("the full sync's progress bars reach 100%", async () => {
    const bar = page.getByRole("progressbar", { name: new RegExp(`${source.database}\\.orders`) });
    await progressing("the orders table's progress bar", async () => {
      const n = await bar.count();
      return { done: n > 0, at: await textOf(page, '[data-testid="task-state"]') };
    });
    await shot("sync-progress");
    await progressing("the full sync", async () => {
      const state = await textOf(page, '[data-testid="task-state"]');
      const value = (await bar.count()) ? await bar.evaluate((p) => p.value) : 0;
      return { done: value === 100 && state === "incremental", at: `${state} ${value}%` };
    });
    await shot("sync-overview");
  });

  await step("a table is added to the running task", async () => {
    await page.getByRole("link", { name: "Configure" }).click();
    await page.getByRole("button", { name: "Load the source's objects" }).click();
    await page.locator(`input[name="table-${source.database}.items"]`).check();
    await page.getByRole("button", { name: "Apply the objects" }).click();
    // The worker switches at the next transaction boundary: the source keeps changing, as a
    // live one does.
    // Each insert is a new transaction boundary; the rows written count as progress.
    let written = 0;
    await progressing("the switch to the new objects", async () => {
      const done = (await page.getByTestId("objects-applied").filter({ hasText: "Applied" }).count()) > 0;
      if (!done) sql(`INSERT INTO orders VALUES (${100_000 + written++}, 1.00, 'while adding a table')`);
      await page.waitForTimeout(500);
      return { done, at: `${written} rows written` };
    });
    await shot("sync-reselect");
  });

  await step("a verification finds no differences", async () => {
    await page.getByRole("link", { name: "Overview" }).click();
    const items = page.getByRole("progressbar", { name: new RegExp(`${source.database}\\.items`) });
    await progressing("the added table's copy", async () => {
      const value = (await items.count()) ? await items.evaluate((p) => p.value) : -1;
      return { done: value === 100, at: `${value}%` };
    });
    await page.getByRole("link", { name: "Verify" }).click();
    await page.getByRole("button", { name: "Verify now" }).click();
    await progressing("the verification", async () => {
      const at = await textOf(page, '[data-testid="verify-state"]');
      // A failure names the differing keys (the per-table report below the state).
      const table = at.includes("differences") && !at.includes("no differences") ? await textOf(page, 'table[aria-label="Verification per table"] tbody') : "";
      return { done: at.includes("no differences"), at: table ? `${at}: ${table}` : at };
    });
    await shot("verify");
  });

  await step("the sync screens fit a phone, and every control has a label", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const [link, name, ready] of [
      ["Verify", "verify-phone", '[data-testid="verify-state"]'],
      ["Configure", "sync-configure-phone", 'button:has-text("Apply the objects"), button:has-text("Save configuration")'],
      ["Overview", "sync-overview-phone", '[data-testid="task-state"]'],
    ]) {
      await page.getByRole("link", { name: link }).click();
      await page.locator(ready).first().waitFor();
      const wide = await overflow(page);
      if (wide > 2) throw new Error(`${link} is ${wide}px wider than a 390px screen`);
      const missing = await unlabelled(page);
      if (missing.length) throw new Error(`${link} has controls without a label: ${missing.join(", ")}`);
      await shot(name);
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  if (problems.length) throw new Error(`console errors or failed requests:\n${problems.join("\n")}`);
} catch (e) {
  if (shots) await page.screenshot({ path: join(shots, "sync-failure.png"), fullPage: true }).catch(() => {});
  console.error(String(e?.stack ?? e));
  await browser.close();
  process.exit(1);
}
await browser.close();
