// Steadfast console: actions through the admin API, messages, and the overview's refresh.
// Plain fetch, no library. The CSRF token comes from the page's <meta>; the session cookie
// is HttpOnly and sent by the browser.
"use strict";
(function () {
  const meta = document.querySelector('meta[name="steadfast-csrf"]');
  const csrf = meta ? meta.content : "";
  const FLASH_KEY = "steadfast-flash";
  const BASE = "/admin/ui";

  function flash(text, kind) {
    const el = document.getElementById("flash");
    if (!el) return;
    el.textContent = text;
    el.className = "flash " + (kind || "");
    el.hidden = false;
  }

  // A message kept across the reload that follows a successful action.
  const kept = sessionStorage.getItem(FLASH_KEY);
  if (kept) {
    sessionStorage.removeItem(FLASH_KEY);
    try { const k = JSON.parse(kept); flash(k.text, k.kind); } catch (e) { /* ignore */ }
  }

  function summary(body) {
    if (!body || typeof body !== "object") return "";
    const parts = [];
    for (const key of ["replayed", "purged", "deleted", "due_now", "resumes", "state"]) {
      if (key in body) parts.push(key.replace("_", " ") + ": " + body[key]);
    }
    if (Array.isArray(body.breakers)) {
      parts.push(body.breakers.map((b) => b.name + " is " + b.state).join(", "));
    }
    return parts.join("; ");
  }

  async function call(method, url) {
    const res = await fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: { "X-Steadfast-CSRF": csrf, "Accept": "application/json" },
    });
    let body = null;
    try { body = await res.json(); } catch (e) { /* no body */ }
    if (!res.ok) {
      const detail = (body && (body.detail || body.title)) || res.statusText;
      throw new Error(detail + " (" + res.status + ")");
    }
    return body;
  }

  async function act(button) {
    const label = button.textContent.replace(/…$/, "");
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
      flash(label + ": cancelled.", "");
      return;
    }
    button.disabled = true;
    try {
      let text;
      if (button.dataset.each) {
        const ids = (button.dataset.ids || "").split(" ").filter(Boolean);
        for (const id of ids) {
          await call(button.dataset.method, button.dataset.each.replace("{id}", encodeURIComponent(id)));
        }
        text = label + ": done for " + ids.length + " message(s).";
      } else {
        const body = await call(button.dataset.method, button.dataset.url);
        const s = summary(body);
        text = label + ": done" + (s ? " (" + s + ")." : ".");
      }
      sessionStorage.setItem(FLASH_KEY, JSON.stringify({ text: text, kind: "good" }));
      const container = button.closest("[data-after-delete]");
      if (button.dataset.method === "DELETE" && container) {
        window.location.assign(container.dataset.afterDelete);
      } else {
        window.location.reload();
      }
    } catch (e) {
      flash(label + " failed: " + e.message, "bad");
      button.disabled = false;
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.action");
    if (button) { act(button); return; }
    if (event.target.closest("button[data-logout]")) {
      fetch(BASE + "/logout", {
        method: "POST", credentials: "same-origin", headers: { "X-Steadfast-CSRF": csrf },
      }).finally(() => { window.location.assign(BASE + "/login"); });
    }
  });

  // The overview: swap the figures in place every few seconds.
  const live = document.querySelector("[data-live]");
  if (live) {
    const every = Number(live.dataset.every) || 5000;
    setInterval(async () => {
      try {
        const res = await fetch(live.dataset.live, { credentials: "same-origin" });
        if (res.redirected || res.status === 401) { flash("Session expired: log in again.", "bad"); return; }
        if (res.ok) { live.innerHTML = await res.text(); live.dataset.refreshed = new Date().toISOString(); }
      } catch (e) { /* keep the last figures; the next tick tries again */ }
    }, every);
  }
})();
