// The data-synchronization procedure in a real browser, run by
// tests/integration/tests/console.rs with the variables of tracking.mjs and
//   FERRY_TARGET   {"engine", "host", "port", "username", "password", "database"}: PostgreSQL
// The source database holds `orders` (thousands of rows) and `items`.
import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { launch, sourceSql as sql, step, watchPage } from "./browser.mjs";

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
    await bar.waitFor({ timeout: 60_000 });
    await shot("sync-progress");
    await page.waitForFunction(
      (name) => [...document.querySelectorAll("progress")].some((p) => p.getAttribute("aria-label")?.startsWith(name) && p.value === 100),
      `${source.database}.orders`,
      { timeout: 180_000 },
    );
    await page.getByTestId("task-state").filter({ hasText: "incremental" }).waitFor({ timeout: 120_000 });
    await shot("sync-overview");
  });

  await step("a table is added to the running task", async () => {
    await page.getByRole("link", { name: "Configure" }).click();
    await page.getByRole("button", { name: "Load the source's objects" }).click();
    await page.locator(`input[name="table-${source.database}.items"]`).check();
    await page.getByRole("button", { name: "Apply the objects" }).click();
    // The worker switches at the next transaction boundary: the source keeps changing, as a
    // live one does.
    const applied = page.getByTestId("objects-applied").filter({ hasText: "Applied" });
    for (let i = 0; i < 120 && !(await applied.count()); i++) {
      sql(`INSERT INTO orders VALUES (${100_000 + i}, 1.00, 'while adding a table')`);
      await page.waitForTimeout(1000);
    }
    await applied.waitFor({ timeout: 10_000 });
    await shot("sync-reselect");
  });

  await step("a verification finds no differences", async () => {
    await page.getByRole("link", { name: "Overview" }).click();
    await page.waitForFunction(
      (name) => [...document.querySelectorAll("progress")].some((p) => p.getAttribute("aria-label")?.startsWith(name) && p.value === 100),
      `${source.database}.items`,
      { timeout: 180_000 },
    );
    await page.getByRole("link", { name: "Verify" }).click();
    await page.getByRole("button", { name: "Verify now" }).click();
    await page.getByTestId("verify-state").filter({ hasText: "no differences" }).waitFor({ timeout: 180_000 });
    await shot("verify");
  });

  if (problems.length) throw new Error(`console errors or failed requests:\n${problems.join("\n")}`);
} catch (e) {
  if (shots) await page.screenshot({ path: join(shots, "sync-failure.png"), fullPage: true }).catch(() => {});
  console.error(String(e?.stack ?? e));
  await browser.close();
  process.exit(1);
}
await browser.close();
