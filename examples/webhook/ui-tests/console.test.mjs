// End-to-end test of the ops console in headless Chromium.
//
// Starts the webhook binary (demo mode: in-memory stores) on free ports with the console on
// its ops listener, and a fake downstream that fails until told otherwise. Then, in the
// browser: a wrong token is refused; log in; a message sent while the downstream fails shows
// up as a dead letter; its page shows the payload masked and escaped; replay it once the
// downstream works and see it delivered; open and close a breaker; look up the conversation;
// log out. Screenshots of each page go to target/ui-screenshots/.
//
// Env: WEBHOOK_BIN (default target/debug/steadfast-webhook), CHROMIUM (default
// /usr/bin/chromium).

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdirSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, launch, letters, logger, logOut, openPage, refusedThenLoggedIn, repo, shot, shots, start, until } from "./harness.mjs";

const bin = process.env.WEBHOOK_BIN || path.join(repo, "target/debug/steadfast-webhook");
const APP_SECRET = "ui-test-app-secret-0123456789";
const ADMIN_TOKEN = "ui-test-admin-token-0123456789";
const SENDER = "250788123456";
// Unique per run, so a store that outlives the run never sees it as a duplicate; letters only,
// because the console masks long runs of digits (phone numbers) wherever they appear.
const WAMID = "wamid.UI." + letters(Date.now());

const log = logger("ui");

// The fake downstream: 503 while `failing`, else a reply; counts deliveries per message id.
const fake = { failing: true, delivered: new Map() };
const downstream = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => { body += c; });
  req.on("end", () => {
    res.setHeader("content-type", "application/json");
    if (fake.failing) { res.statusCode = 503; res.end('{"error":"down"}'); return; }
    let id = "";
    try { id = JSON.parse(body).message_id || ""; } catch (e) { /* counted as "" */ }
    fake.delivered.set(id, (fake.delivered.get(id) || 0) + 1);
    res.end(JSON.stringify({ reply: "noted", done: false }));
  });
});

function delivery(text) {
  const now = Math.floor(Date.now() / 1000);
  return JSON.stringify({
    object: "whatsapp_business_account",
    entry: [{ id: "310987654321098", changes: [{ field: "messages", value: {
      messaging_product: "whatsapp",
      metadata: { display_phone_number: "250780000100", phone_number_id: "106540352242922" },
      contacts: [{ profile: { name: "Aline" }, wa_id: SENDER }],
      messages: [{ from: SENDER, id: WAMID, timestamp: String(now), type: "text", text: { body: text } }],
    } }] }],
  });
}

async function main() {
  mkdirSync(shots, { recursive: true });
  await new Promise((r) => downstream.listen(0, "127.0.0.1", r));
  const fakeUrl = `http://127.0.0.1:${downstream.address().port}`;
  const [listen, ops] = [await freePort(), await freePort()];
  const dir = mkdtempSync(path.join(tmpdir(), "steadfast-ui-"));
  const config = path.join(dir, "webhook.toml");
  writeFileSync(config, `listen = "127.0.0.1:${listen}"
ops_listen = "127.0.0.1:${ops}"
[whatsapp]
app_secret = "${APP_SECRET}"
verify_token = "ui-test-verify-token-0123"
[admin]
token = "${ADMIN_TOKEN}"
[worker]
max_attempts = 2
backoff_initial_ms = 100
backoff_max_ms = 200
[[services]]
name = "jobs"
endpoints = ["${fakeUrl}/jobs"]
keywords = ["job"]
[routing]
default_service = "jobs"
[storage]
sqlite_path = "${path.join(dir, "webhook.db")}"
`);
  // The service runs on its own SQLite file (`start` drops DATABASE_URL and REDIS_URL).
  const service = start(bin, ["--config", config]);
  const base = `http://127.0.0.1:${ops}`;
  let browser;
  try {
    await until("the service to answer /health", async () => {
      try { return (await fetch(`http://127.0.0.1:${listen}/health`)).ok; } catch (e) { return false; }
    });
    // The console lives on the ops listener only.
    assert.equal((await fetch(`http://127.0.0.1:${listen}/admin/ui/login`)).status, 404);

    const body = delivery("I want a job <script>window.__xss = 1</script> call me on 250788999888");
    const sig = "sha256=" + createHmac("sha256", APP_SECRET).update(body).digest("hex");
    const res = await fetch(`http://127.0.0.1:${listen}/webhook`, {
      method: "POST", body, headers: { "content-type": "application/json", "x-hub-signature-256": sig },
    });
    assert.equal(res.status, 200, await res.text());

    browser = await launch();
    const { context, page, dialogs, consoleErrors } = await openPage(browser);

    log("a wrong token is refused, then log in");
    await refusedThenLoggedIn(page, context, base, ADMIN_TOKEN, "login-refused");
    const [cookie] = await context.cookies();
    assert.equal(cookie.name, "steadfast_admin");
    assert.ok(cookie.httpOnly && cookie.sameSite === "Strict" && cookie.path === "/admin");
    assert.ok(!cookie.value.includes(ADMIN_TOKEN));

    log("a dead letter from the failing downstream");
    await until("the dead letter to appear", async () => {
      await page.goto(base + "/admin/ui/dead-letters");
      return (await page.getByRole("link", { name: WAMID }).count()) === 1;
    });
    await page.getByText("downstream_http_503").first().waitFor();
    await shot(page, "dead-letters");

    log("the overview counts it and refreshes in place");
    await page.goto(base + "/admin/ui");
    const live = page.locator("[data-live]");
    // Queue statistics are read every 10 s; the page swaps them in every 5 s.
    await until("the dead letter counted by a live refresh", async () =>
      (await live.getAttribute("data-refreshed")) !== null &&
      (await page.locator(".card").first().locator(".big").innerText()).trim() === "1", 30000);
    await shot(page, "overview");

    log("its page: masked and escaped");
    await page.goto(base + "/admin/ui/dead-letters");
    await page.getByRole("link", { name: WAMID }).click();
    await page.getByRole("heading", { name: "Message" }).waitFor();
    const html = await page.content();
    assert.ok(!html.includes(SENDER) && !html.includes("250788999888"), "phone numbers are masked");
    assert.ok(html.includes("+250788***456") && html.includes("+250788***888"));
    assert.ok(html.includes("&lt;script&gt;window.__xss"), "the payload's markup is shown as text");
    assert.equal(await page.evaluate(() => window.__xss), undefined, "and never runs");
    assert.equal(await page.locator("#message-state").innerText(), "dead");
    await shot(page, "dead-letter");

    log("purge asks first (and is cancelled here)");
    await page.goto(base + "/admin/ui/dead-letters");
    await page.getByRole("button", { name: "Purge all matching…" }).click();
    await page.getByText("Purge all matching: cancelled.").waitFor();
    assert.equal(dialogs.length, 1);
    assert.equal(await page.getByRole("link", { name: WAMID }).count(), 1, "nothing purged");

    log("replay once the downstream works, and see it delivered");
    fake.failing = false;
    await page.getByRole("link", { name: WAMID }).click();
    await page.getByRole("button", { name: "Replay" }).click();
    await page.getByText("Replay: done (replayed: 1).").waitFor();
    await until("the message to be delivered", async () => {
      await page.reload();
      return (await page.locator("#message-state").innerText()).startsWith("done");
    });
    assert.equal(fake.delivered.get(WAMID), 1, "delivered once");
    await shot(page, "delivered");

    log("open and close a breaker");
    await page.getByRole("link", { name: "Breakers & services" }).click();
    const row = page.locator('tr[data-breaker^="jobs@"]');
    const name = await row.getAttribute("data-breaker");
    await row.getByRole("button", { name: "Open " + name }).click();
    await page.getByText(`${name} is forced_open`).waitFor();
    assert.equal(await page.locator('tr[data-breaker^="jobs@"] .badge').innerText(), "forced_open");
    await shot(page, "breakers");
    await page.locator('tr[data-breaker^="jobs@"]').getByRole("button", { name: "Close " + name }).click();
    await page.getByText(`${name} is closed`).waitFor();
    assert.equal(await page.locator('tr[data-breaker^="jobs@"] .badge').innerText(), "closed");

    log("look up the conversation");
    await page.getByRole("link", { name: "Conversations" }).click();
    await page.getByLabel("Sender's number").fill("+" + SENDER);
    await page.getByRole("button", { name: "Look up" }).click();
    await page.locator("#conversation-state").waitFor();
    await page.getByRole("heading", { name: "+250788***456" }).waitFor();
    assert.ok(!(await page.content()).includes("250788999888"));
    await shot(page, "conversation");

    log("sagas");
    await page.getByRole("link", { name: "Sagas" }).click();
    await page.getByRole("heading", { name: "Sagas" }).waitFor();
    await shot(page, "sagas");

    log("log out");
    await logOut(page, base, "/admin/ui/breakers", consoleErrors);

    log("all passed; screenshots in", shots);
  } catch (e) {
    console.error(service.output().split("\n").slice(-40).join("\n"));
    throw e;
  } finally {
    if (browser) await browser.close();
    await service.stop();
    downstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
