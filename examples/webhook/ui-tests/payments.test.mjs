// End-to-end test of the payments service's ops console in headless Chromium.
//
// Starts the payments binary in demo mode (in-memory stores, its built-in fake provider) on a
// free port. Then, in the browser: a wrong token is refused; log in; a callback for an
// unknown payout and one for an account that does not exist yet are parked and listed as dead
// letters; the second is replayed once the account exists and is seen processed; a payout's
// saga is shown with its steps; the provider breaker is opened and closed; the ledger page
// says the invariant holds; log out. Screenshots go to target/ui-screenshots/payments-*.png.
//
// Env: PAYMENTS_BIN (default target/debug/steadfast-payments), CHROMIUM (default
// /usr/bin/chromium).

import assert from "node:assert/strict";
import { createHmac, randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { freePort, launch, letters, logger, logOut, openPage, refusedThenLoggedIn, repo, shot, shots, start, until } from "./harness.mjs";

const log = logger("payments-ui");
const bin = process.env.PAYMENTS_BIN || path.join(repo, "target/debug/steadfast-payments");
const ADMIN_TOKEN = "ui-test-admin-token-0123456789";
const API_TOKEN = "ui-test-api-token-0123456789";
const SECRET = "ui-test-callback-secret-0123456789";
const RUN = letters(Date.now());
const PARKED_PAYOUT = "txpayout" + RUN;
const PARKED_ACCOUNT = "txaccount" + RUN;
const LATER = "acc_later_" + RUN;

async function main() {
  mkdirSync(shots, { recursive: true });
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const service = start(bin, ["--demo"], {
    LISTEN_ADDR: `127.0.0.1:${port}`,
    ADMIN_TOKEN,
    PAYMENTS_API_TOKEN: API_TOKEN,
    MOMO_CALLBACK_SECRET: SECRET,
    MOMO_API_KEY: "ui-test-momo-api-key",
  });
  const admin = (p, init = {}) => fetch(base + "/admin" + p, {
    ...init, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json", ...(init.headers || {}) },
  });
  const callback = (body) => {
    const raw = JSON.stringify(body);
    return fetch(base + "/momo/callback", {
      method: "POST", body: raw,
      headers: { "content-type": "application/json", "x-signature": createHmac("sha256", SECRET).update(raw).digest("hex") },
    });
  };
  let browser;
  try {
    await until("the service to answer /health", async () => {
      try { return (await fetch(base + "/health")).ok; } catch (e) { return false; }
    });

    // Money in, and a payout the demo provider settles.
    assert.equal((await admin("/accounts", { method: "POST", body: JSON.stringify({ id: "acc_ui", currency: "RWF" }) })).status, 201);
    assert.equal((await callback({ transactionId: "txdeposit" + RUN, externalId: "acc_ui", type: "collection", amount: 5000, currency: "RWF", status: "SUCCESSFUL" })).status, 200);
    await until("the deposit credited", async () =>
      (await (await fetch(base + "/v1/accounts/acc_ui", { headers: { authorization: `Bearer ${API_TOKEN}` } })).json()).balance === 5000);
    const payout = await (await fetch(base + "/v1/payouts", {
      method: "POST",
      headers: { authorization: `Bearer ${API_TOKEN}`, "idempotency-key": randomUUID(), "content-type": "application/json" },
      body: JSON.stringify({ account: "acc_ui", msisdn: "250788123456", amount: 800, currency: "RWF" }),
    })).json();
    assert.equal(payout.status, "pending", JSON.stringify(payout));

    // Two callbacks the ledger cannot place: parked, not dropped.
    assert.equal((await callback({ transactionId: PARKED_PAYOUT, externalId: "po_nowhere", type: "disbursement", amount: 5, currency: "RWF", status: "SUCCESSFUL" })).status, 200);
    assert.equal((await callback({ transactionId: PARKED_ACCOUNT, externalId: LATER, type: "collection", amount: 7, currency: "RWF", status: "SUCCESSFUL" })).status, 200);

    browser = await launch();
    const { context, page, dialogs, consoleErrors } = await openPage(browser, { accept: true });

    log("a wrong token is refused, then log in");
    await refusedThenLoggedIn(page, context, base, ADMIN_TOKEN);
    assert.equal(await page.locator(".brand").innerText(), "Steadfast payments");

    log("the parked callbacks are dead letters");
    await until("both parked callbacks listed", async () => {
      await page.goto(base + "/admin/ui/dead-letters");
      return (await page.getByRole("link", { name: PARKED_PAYOUT }).count()) === 1 &&
        (await page.getByRole("link", { name: PARKED_ACCOUNT }).count()) === 1;
    });
    await page.getByText("unknown_payout").first().waitFor();
    await page.getByText("unknown_account").first().waitFor();
    await page.getByRole("cell", { name: LATER, exact: true }).waitFor();
    await shot(page, "payments-dead-letters");

    log("the overview counts them");
    await page.goto(base + "/admin/ui");
    // The callback queue is read every 5 s; the page swaps the figures in every 5 s.
    await until("two dead letters on the overview", async () => {
      await page.reload();
      return (await page.locator(".card").first().locator(".big").innerText()).trim() === "2";
    }, 30000);
    await shot(page, "payments-overview");

    log("the unknown payout's callback: its page");
    await page.goto(base + "/admin/ui/dead-letters");
    await page.getByRole("link", { name: PARKED_PAYOUT }).click();
    await page.getByRole("heading", { name: "Message" }).waitFor();
    assert.equal(await page.locator("#message-state").innerText(), "dead");
    assert.ok((await page.content()).includes("po_nowhere"));
    await shot(page, "payments-dead-letter");

    log("replay the other once its account exists, and see it processed");
    assert.equal((await admin("/accounts", { method: "POST", body: JSON.stringify({ id: LATER, currency: "RWF" }) })).status, 201);
    await page.goto(base + "/admin/ui/dead-letters");
    await page.getByRole("link", { name: PARKED_ACCOUNT }).click();
    await page.getByRole("button", { name: "Replay" }).click();
    await page.getByText("Replay: done (replayed: 1).").waitFor();
    await until("the callback to be processed", async () => {
      await page.reload();
      return (await page.locator("#message-state").innerText()).startsWith("done");
    });
    const later = await (await fetch(base + "/v1/accounts/" + LATER, { headers: { authorization: `Bearer ${API_TOKEN}` } })).json();
    assert.equal(later.balance, 7, "credited once");

    log("the payout's saga");
    await until("the payout settled", async () =>
      (await (await fetch(base + "/v1/payouts/" + payout.id, { headers: { authorization: `Bearer ${API_TOKEN}` } })).json()).status === "succeeded");
    await page.getByRole("link", { name: "Sagas" }).click();
    await page.getByRole("heading", { name: "Sagas" }).waitFor();
    await page.getByRole("link", { name: payout.id }).click();
    await page.getByRole("heading", { name: "Saga" }).waitFor();
    for (const step of ["reserve", "request", "await_result", "settle"]) {
      await page.getByRole("rowheader", { name: step }).waitFor();
    }
    assert.ok(!(await page.content()).includes("250788123456"), "the msisdn is masked");
    await shot(page, "payments-saga");

    log("open and close the provider breaker");
    await page.getByRole("link", { name: "Breakers" }).click();
    const row = page.locator('tr[data-breaker="momo-provider"]');
    await row.getByRole("button", { name: "Open momo-provider" }).click();
    await page.getByText("momo-provider is forced_open").waitFor();
    assert.equal(await row.locator(".badge").innerText(), "forced_open");
    await shot(page, "payments-breakers");
    await row.getByRole("button", { name: "Close momo-provider" }).click();
    await page.getByText("momo-provider is closed").waitFor();
    assert.equal(await row.locator(".badge").innerText(), "closed");

    log("the ledger holds");
    await page.getByRole("link", { name: "Ledger" }).click();
    await page.getByRole("heading", { name: "Ledger" }).waitFor();
    assert.equal(await page.locator(".card .badge").innerText(), "ok");
    await shot(page, "payments-ledger");

    log("log out");
    await logOut(page, base, "/admin/ui/dead-letters", consoleErrors);

    assert.deepEqual(dialogs, [], "nothing here asked for a confirmation");
    log("all passed; screenshots in", shots);
  } catch (e) {
    console.error(service.output().split("\n").slice(-40).join("\n"));
    throw e;
  } finally {
    if (browser) await browser.close();
    await service.stop();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
