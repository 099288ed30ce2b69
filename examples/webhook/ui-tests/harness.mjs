// What the console's browser tests share: free ports, waiting for a condition, screenshots
// (after checking the page does not scroll sideways at 1280 px), the browser, and a service
// process whose environment does not carry the Rust tests' databases.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, "../../..");
export const shots = path.join(repo, "target/ui-screenshots");

export function logger(tag) {
  return (...args) => console.log(`[${tag}]`, ...args);
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export async function until(what, check, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error("timed out waiting for: " + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function noHorizontalScroll(page, name) {
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 1280, `${name}: page is ${width}px wide at a 1280px window`);
}

export async function shot(page, name) {
  await noHorizontalScroll(page, name);
  await page.screenshot({ path: path.join(shots, name + ".png"), fullPage: true });
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}

// Letters for the digits of a unique value: the console masks long runs of digits (phone
// numbers) wherever they appear, so ids a test looks for are letters only.
export function letters(n) {
  return n.toString(36).replace(/[0-9]/g, (d) => "abcdefghij"[d]);
}

// Spawns `bin` with `args` and `extraEnv`, WITHOUT DATABASE_URL and REDIS_URL: scripts/test
// exports them for the Rust tests, and either would send the service to the shared databases.
export function start(bin, args, extraEnv = {}) {
  const env = { ...process.env, RUST_LOG: "warn", ...extraEnv };
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], env });
  let output = "";
  child.stdout.on("data", (d) => { output += d; });
  child.stderr.on("data", (d) => { output += d; });
  const exited = new Promise((r) => child.once("exit", r));
  return {
    output: () => output,
    async stop() {
      child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    },
  };
}

// A page in a 1280x800 window; every confirmation dialog is recorded and dismissed (or
// accepted, with `accept`), every script error recorded.
export async function openPage(browser, { accept = false } = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const dialogs = [];
  page.on("dialog", (d) => { dialogs.push(d.message()); if (accept) d.accept(); else d.dismiss(); });
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  return { context, page, dialogs, consoleErrors };
}

// The console at `base` sends a visitor to its login form, refuses a wrong token (401, no
// cookie; a screenshot named `refusedShot`, if given), then logs in with `token`.
export async function refusedThenLoggedIn(page, context, base, token, refusedShot) {
  await page.goto(base + "/admin/ui");
  assert.match(page.url(), /\/admin\/ui\/login$/);
  await page.getByLabel("Admin token").fill("not-the-admin-token-at-all");
  const refused = page.waitForResponse((r) => r.url().endsWith("/admin/ui/login") && r.request().method() === "POST");
  await page.getByRole("button", { name: "Log in" }).click();
  assert.equal((await refused).status(), 401);
  await page.getByText("That is not the admin token.").waitFor();
  assert.equal((await context.cookies()).length, 0, "no cookie for a wrong token");
  if (refusedShot) await shot(page, refusedShot);
  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Overview" }).waitFor();
}

// Logs out, and checks a console page (`path`) sends the browser back to the login form; then
// that no script error happened (a 401 a refused login logs is expected).
export async function logOut(page, base, path, consoleErrors) {
  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL(/\/admin\/ui\/login$/);
  await page.goto(base + path);
  assert.match(page.url(), /\/admin\/ui\/login$/);
  assert.deepEqual(consoleErrors.filter((e) => !e.includes("401")), [], "no script errors");
}
