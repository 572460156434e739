// The change-tracking procedure in a real browser (Debian's Chromium driven by Playwright),
// against `ferry serve`'s console and a worker on the local stack, run by
// tests/integration/tests/console.rs, which passes:
//   FERRY_CONSOLE_URL     http://127.0.0.1:<port>/console/
//   FERRY_SOURCE          {"host", "port", "username", "password", "database"} (JSON)
//   FERRY_MARIADB         {"host", "port", "user", "password"}: an admin session to write rows
//   FERRY_SCREENSHOTS     a directory for a screenshot of each screen (optional)
// Exits non-zero with the step that failed. Prints `{"first_render_ms": n}`.
import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { launch, overflow, progressing, sourceSql as sql, step, tabTo, textOf, unlabelled, watchPage } from "./browser.mjs";

const url = process.env.FERRY_CONSOLE_URL;
const source = JSON.parse(process.env.FERRY_SOURCE);
const shots = process.env.FERRY_SCREENSHOTS;
if (shots) mkdirSync(shots, { recursive: true });

const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const problems = watchPage(page, [
  // Refusals the scenario asks for on purpose.
  (r) => r.status() === 409 && r.url().includes("/v1/instances/") && r.request().method() === "DELETE",
  // A row filter Ferry refuses, typed on purpose.
  (r) => r.status() === 422 && r.url().endsWith("/task") && r.request().method() === "PUT",
  // A start point the source does not hold, given on purpose.
  (r) => r.status() === 422 && r.url().endsWith("/task/start") && r.request().method() === "POST",
  // A backfill of a table the task does not carry, asked for on purpose.
  (r) => r.status() === 422 && r.url().endsWith("/task/backfill") && r.request().method() === "POST",
]);
/** The instance the page shows (`#/instances/<id>/<tab>`). */
const instanceId = () => decodeURIComponent(new URL(page.url()).hash.split("/")[2] ?? "");
const shot = async (name) => {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
};

try {
  await step("the instance list renders", async () => {
    const started = Date.now();
    await page.goto(url);
    await page.getByRole("heading", { name: "Instances" }).waitFor();
    await page.getByRole("button", { name: "Create instance" }).waitFor();
    console.log(JSON.stringify({ first_render_ms: Date.now() - started }));
  });

  await step("a pay-as-you-go tracking instance is created", async () => {
    await page.getByRole("button", { name: "Create instance" }).click();
    await page.getByLabel("Name").fill("orders-cdc");
    await page.getByLabel("Mode").selectOption("tracking");
    await page.getByLabel("Billing").selectOption("pay_as_you_go");
    await shot("instances-create");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { name: "orders-cdc" }).waitFor();
    await page.getByRole("button", { name: "Load the source's objects" }).waitFor();
  });

  await step("the task is configured with the object picker", async () => {
    await page.getByLabel("Host").first().fill(source.host);
    await page.getByLabel("Port").first().fill(String(source.port));
    await page.getByLabel("User").first().fill(source.username);
    await page.getByLabel("Password").first().fill(source.password);
    await page.getByRole("button", { name: "Load the source's objects" }).click();
    await page.getByLabel("Search databases, tables and columns").fill("orders");
    const table = page.locator(`input[name="table-${source.database}.orders"]`);
    await table.check();
    await page.getByRole("button", { name: "all columns" }).click();
    // A table pattern, added with Enter (not submitting the form), shown in the JSON, removed.
    await page.getByLabel(/^Add by pattern/).fill(`${source.database}.orders_archive_*`);
    await page.getByLabel(/^Add by pattern/).press("Enter");
    await shot("configure-picker");
    await page.getByText("The configuration as JSON").click();
    let json = JSON.parse(await page.getByTestId("config-json").textContent());
    const tables = json.objects.databases[0].tables.map((t) => t.name);
    if (JSON.stringify(tables) !== JSON.stringify(["orders", "orders_archive_*"])) throw new Error(`the JSON does not select orders and the pattern: ${JSON.stringify(json.objects)}`);
    await page.getByRole("list", { name: "Patterns" }).getByRole("button", { name: "remove" }).click();
    json = JSON.parse(await page.getByTestId("config-json").textContent());
    if (json.objects.databases[0].tables.length !== 1 || json.objects.databases[0].tables[0].name !== "orders") throw new Error(`the JSON does not select orders: ${JSON.stringify(json.objects)}`);
    // A row filter Ferry refuses is shown next to its field with the reason; a good one is kept.
    const filter = page.getByLabel("Row filter of orders");
    await filter.fill("total > 0 AND SLEEP(1) = 0");
    await page.getByRole("button", { name: "Save configuration" }).click();
    await page.locator(".field.invalid").filter({ hasText: "function call" }).waitFor();
    await filter.fill("total >= 0");
    json = JSON.parse(await page.getByTestId("config-json").textContent());
    if (json.objects.databases[0].tables[0].filter !== "total >= 0") throw new Error(`the JSON lacks the filter: ${JSON.stringify(json.objects)}`);
    // The binlog archive is asked for with its retention, and left off again (this scenario's
    // source is the stack's shared server: archiving it would copy every test's writes).
    await page.getByLabel("Archive the binlog").check();
    await page.getByLabel(/^Keep archived files/).fill("30");
    json = JSON.parse(await page.getByTestId("config-json").textContent());
    if (json.archive?.retention_days !== 30) throw new Error(`the JSON lacks the archive: ${JSON.stringify(json.archive)}`);
    await page.getByLabel("Archive the binlog").uncheck();
    json = JSON.parse(await page.getByTestId("config-json").textContent());
    if (json.archive !== undefined) throw new Error(`the archive stayed in the JSON: ${JSON.stringify(json.archive)}`);
    await page.getByRole("button", { name: "Save configuration" }).click();
    await page.getByText("Saved.").waitFor();
  });

  await step("the precheck passes and the task starts", async () => {
    const start = page.getByRole("button", { name: "Start" });
    if (!(await start.isDisabled())) throw new Error("start is allowed before the precheck passed");
    await page.getByRole("button", { name: "Run precheck" }).click();
    await page.getByTestId("precheck-result").filter({ hasText: "Precheck passed" }).waitFor({ timeout: 60_000 });
    await shot("precheck");
    // A start point the source does not hold: the start's precheck item says what it holds.
    await page.getByLabel("Begin at").selectOption("position");
    await page.getByLabel("Position", { exact: true }).fill("no-such-bin.000001:4");
    await start.click();
    await page.locator("tr.check-failed").filter({ hasText: "source.start_point" }).filter({ hasText: "does not exist" }).waitFor();
    await shot("start-point");
    // From now: the precheck again, then the start.
    await page.getByLabel("Begin at").selectOption("now");
    await page.getByRole("button", { name: "Run precheck" }).click();
    await page.getByTestId("precheck-result").filter({ hasText: "Precheck passed" }).waitFor({ timeout: 60_000 });
    await start.click();
    // The state moves (starting, incremental): waited for while it changes.
    await progressing("the task to run", async () => {
      const at = await textOf(page, '[data-testid="task-state"]');
      return { done: at === "incremental", at };
    });
  });

  await step("rows written in MariaDB move the charts", async () => {
    for (let i = 0; i < 20; i++) sql(`INSERT INTO orders (id, total) VALUES (${i + 1}, ${i}.50)`);
    // The worker reports its counts each minute's share as it goes; the overview polls every
    // 5 s. The rows of the last hour reach the 20 written (the charts are drawn from them).
    await progressing("the 20 rows in the last hour's metrics and a checkpoint", async () => {
      const rows = Number((await textOf(page, '[data-testid="rows-hour"]')).replace(/\D/g, "") || 0);
      const checkpoint = await textOf(page, '[data-testid="checkpoint"]');
      return { done: rows >= 20 && !checkpoint.includes("none yet"), at: `${rows} rows, checkpoint ${checkpoint}` };
    });
    await shot("overview");
  });

  await step("a backfill copies the table's rows into the topic, with its progress", async () => {
    const card = page.getByTestId("backfill");
    const tables = card.getByLabel("Tables to backfill");
    // Prefilled with the tables the selection names (not its pattern).
    const named = await tables.inputValue();
    if (named !== `${source.database}.orders`) throw new Error(`the tables to backfill are prefilled with ${named}`);
    // A table the task does not carry: refused, the reason next to the field.
    await tables.fill(`${source.database}.customers`);
    await card.getByRole("button", { name: "Backfill" }).click();
    await card.locator(".field.invalid").filter({ hasText: "not among the task's objects" }).waitFor();
    await tables.fill(named);
    await card.getByRole("button", { name: "Backfill" }).click();
    await progressing("the backfill to finish", async () => {
      const state = await textOf(page, '[data-testid="backfill-state"]');
      const bar = await card.locator("progress").first().getAttribute("value").catch(() => null);
      return { done: state === "done", at: `${state}, ${bar ?? "no"}%` };
    });
    const bar = await card.getByRole("progressbar", { name: `${source.database}.orders: 100%` }).count();
    if (bar !== 1) throw new Error("the finished backfill's table is not shown at 100%");
    await card.getByLabel("Tables to backfill").waitFor();
    await shot("backfill");
  });

  await step("two consumer groups are created, a password changed, a group deleted", async () => {
    await page.getByRole("link", { name: "Consumer groups" }).click();
    const create = async (name, password) => {
      await page.getByLabel("Group name").fill(name);
      await page.getByLabel("Username", { exact: true }).fill(name);
      await page.getByLabel("Password", { exact: true }).fill(password);
      await page.getByRole("button", { name: "Create group" }).click();
      await page.getByTestId(`group-${name}`).waitFor();
    };
    await create("billing", "Billing-2026");
    // The second with the keyboard only: Tab to the first field, type, Tab on, Enter.
    await page.getByRole("heading", { name: "orders-cdc" }).click();
    await tabTo(page, "Group name");
    await page.keyboard.type("search");
    await page.keyboard.press("Tab");
    await page.keyboard.type("search");
    await page.keyboard.press("Tab");
    await page.keyboard.type("Search-2026");
    await page.keyboard.press("Enter");
    await page.getByTestId("group-search").waitFor();
    const billing = page.getByTestId("group-billing");
    await billing.getByText("sasl.username").waitFor();
    await billing.getByLabel("Old password").fill("Billing-2026");
    await billing.getByLabel("New password").fill("Billing-2027");
    await billing.getByRole("button", { name: "Change password" }).click();
    await billing.getByText("Password changed.").waitFor();
    await shot("groups");
    page.once("dialog", (d) => d.accept());
    await page.getByTestId("group-search").getByRole("button", { name: "Delete group" }).click();
    await page.getByTestId("group-search").waitFor({ state: "detached" });
  });

  await step("the changes of one key, with the changed column highlighted", async () => {
    sql("UPDATE orders SET total = total + 1 WHERE id = 5");
    sql("UPDATE orders SET total = total + 1 WHERE id = 5");
    await page.getByRole("link", { name: "Data changes" }).click();
    await page.getByLabel("Table").fill("orders");
    await page.getByLabel("Primary key").fill("5");
    // The topic takes the updates as the worker reads them: ask again while the count grows.
    // The task's checkpoint moving counts as progress too.
    // Its insert, its row as the backfill read it, and the two updates.
    await progressing("the four changes of key 5", async () => {
      await page.getByRole("button", { name: "Show changes" }).click();
      await page.getByRole("status").filter({ hasText: "changes" }).waitFor();
      const count = await page.getByTestId("change").count();
      const task = await page.evaluate(async (id) => (await (await fetch(`/v1/instances/${id}/task`)).json()).checkpoint?.position ?? "", instanceId());
      return { done: count === 4, at: `${count} changes, checkpoint ${task}` };
    });
    const count = await page.getByTestId("change").count();
    if (count !== 4) throw new Error(`${count} changes of key 5, 4 expected`);
    if ((await page.locator(".badge.op-read").count()) !== 1) throw new Error("the backfilled row is not shown as read");
    if ((await page.locator("tr.changed").count()) !== 2) throw new Error("each update's changed column is highlighted");
    await shot("changes");
  });

  await step("every screen fits a phone, and every control has a label", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const screens = [
      ["Overview", "overview-phone", '[data-testid="task-state"]'],
      ["Configure", "configure-phone", 'button:has-text("Save configuration"), button:has-text("Apply the objects")'],
      ["Consumer groups", "groups-phone", '[data-testid="group-billing"]'],
      ["Data changes", "changes-phone", 'button:has-text("Show changes")'],
    ];
    for (const [link, name, ready] of screens) {
      await page.getByRole("link", { name: link }).click();
      await page.locator(ready).first().waitFor();
      const wide = await overflow(page);
      if (wide > 2) throw new Error(`${link} is ${wide}px wider than a 390px screen`);
      const missing = await unlabelled(page);
      if (missing.length) throw new Error(`${link} has controls without a label: ${missing.join(", ")}`);
      await shot(name);
    }
    await page.goto(url);
    await page.getByRole("heading", { name: "Instances" }).waitFor();
    await page.getByRole("link", { name: "orders-cdc" }).waitFor();
    const wide = await overflow(page);
    if (wide > 2) throw new Error(`the instance list is ${wide}px wider than a 390px screen`);
    const missing = await unlabelled(page);
    if (missing.length) throw new Error(`the instance list has controls without a label: ${missing.join(", ")}`);
    await shot("instances-phone");
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.getByRole("link", { name: "orders-cdc" }).click();
    await page.getByRole("heading", { name: "orders-cdc" }).waitFor();
  });

  await step("the instance is reset, then deleted", async () => {
    await page.getByRole("link", { name: "Overview" }).click();
    page.once("dialog", (d) => d.accept());
    await page.getByRole("button", { name: "Reset" }).click();
    await progressing("the reset", async () => {
      const at = await textOf(page, '[data-testid="task-state"]');
      return { done: at === "not configured", at };
    });
    page.once("dialog", (d) => d.accept());
    await page.getByRole("button", { name: "Delete" }).click();
    await page.getByRole("heading", { name: "Instances" }).waitFor();
    await page.getByRole("link", { name: "orders-cdc" }).waitFor({ state: "detached" });
  });


  await step("a subscription instance refuses deletion, with the reason shown", async () => {
    await page.goto(url);
    await page.getByRole("button", { name: "Create instance" }).click();
    await page.getByLabel("Name").fill("orders-yearly");
    await page.getByLabel("Billing").selectOption("subscription");
    await page.getByText("It cannot be deleted").waitFor();
    await page.getByLabel("Months").fill("12");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { name: "orders-yearly" }).waitFor();
    page.once("dialog", (d) => d.accept());
    await page.getByRole("button", { name: "Delete" }).click();
    await page.getByRole("alert").filter({ hasText: /subscription/i }).first().waitFor();
    await shot("subscription-delete-refused");
  });

  if (problems.length) throw new Error(`console errors or failed requests:\n${problems.join("\n")}`);
} catch (e) {
  if (shots) await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  console.error(String(e?.stack ?? e));
  await browser.close();
  process.exit(1);
}
await browser.close();
