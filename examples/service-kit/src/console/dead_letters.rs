//! Dead letters: a filtered, paged list, and one message's page.
//!
//! Filters are the admin API's (`state`, `error_kind`, `since`, `until`, paging by `after`)
//! plus `service`, which the queue does not index: the service a message failed on is read
//! from its last error (the worker names the service in every downstream error), on the page
//! fetched. With a service filter the bulk buttons therefore act on the messages shown, one
//! admin call each; without it they send the filter to the admin API's bulk replay and purge.

use std::fmt::Write as _;

use axum::Extension;
use axum::extract::{Path, Query};
use axum::response::Response;
use chrono::{NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::api::Api;
use super::auth::PageSession;
use super::html::{self, esc, url_part};

/// The list's filters, as the form sends them.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    error_kind: Option<String>,
    /// `YYYY-MM-DDTHH:MM` (UTC, what `<input type=datetime-local>` sends) or RFC 3339.
    since: Option<String>,
    until: Option<String>,
    service: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// What the dead-letter pages show of a service's messages.
#[derive(Debug, Clone)]
pub struct DeadLetterView {
    services: Vec<String>,
    label_key: String,
    group: GroupColumn,
}

/// How a message's group key (`group_key`) is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupColumn {
    /// A phone number (a sender), masked as one, under this column title.
    Phone(String),
    /// Not the group key but this payload field, under a column title (`("For",
    /// "externalId")`), digit runs masked.
    Payload(String, String),
    /// Not shown.
    Hidden,
}

impl Default for DeadLetterView {
    /// Labelled by the payload's `message_id`, grouped by sender (`From`), no services.
    fn default() -> Self {
        Self {
            services: Vec::new(),
            label_key: "message_id".to_owned(),
            group: GroupColumn::Phone("From".to_owned()),
        }
    }
}

impl DeadLetterView {
    /// The downstream services a message can fail on: a filter, and a column read from each
    /// message's last error ([`service_of`]).
    pub fn services(mut self, services: Vec<String>) -> Self {
        self.services = services;
        self
    }

    /// The payload key whose value names a message in the list (its link text).
    pub fn label_key(mut self, key: impl Into<String>) -> Self {
        self.label_key = key.into();
        self
    }

    /// How the group key is shown.
    pub fn group(mut self, group: GroupColumn) -> Self {
        self.group = group;
        self
    }

    fn label(&self, m: &Value) -> String {
        let raw = match m["payload"].get(&self.label_key) {
            Some(v) if !v.is_null() => html::text(&m["payload"], &self.label_key),
            _ => html::text(m, "id"),
        };
        html::mask_digits(&raw)
    }

    fn group_title(&self) -> Option<&str> {
        match &self.group {
            GroupColumn::Phone(t) | GroupColumn::Payload(t, _) => Some(t),
            GroupColumn::Hidden => None,
        }
    }

    fn group_of(&self, m: &Value) -> String {
        let key = html::s(m, "group_key");
        match &self.group {
            GroupColumn::Phone(_) => crate::mask::mask_phone(key),
            GroupColumn::Payload(_, field) => html::mask_digits(html::s(&m["payload"], field)),
            GroupColumn::Hidden => String::new(),
        }
    }
}

/// Page size of the list.
pub const PAGE_SIZE: u32 = 25;

/// A time from the filter form as RFC 3339 (UTC).
fn rfc3339(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc).to_rfc3339());
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
        .map(|t| t.and_utc().to_rfc3339())
        .ok_or_else(|| format!("{raw:?} is not a time (YYYY-MM-DDTHH:MM, UTC)"))
}

/// The service a message failed on, read from its last error: the worker's downstream errors
/// start with the service's name (`jobs answered HTTP 503`, `jobs: timed out`), and a refusal
/// names it in quotes (`no healthy endpoint for service "jobs"`).
pub fn service_of<'a>(message: &Value, services: &'a [String]) -> Option<&'a str> {
    let last = message["errors"].as_array()?.last()?;
    let text = last["message"].as_str()?;
    services
        .iter()
        .find(|s| {
            text.starts_with(&format!("{s} "))
                || text.starts_with(&format!("{s}:"))
                || text.contains(&format!("\"{s}\""))
        })
        .map(String::as_str)
}

fn last_error(message: &Value) -> (&str, &str) {
    let last = message["errors"].as_array().and_then(|a| a.last());
    (
        last.and_then(|e| e["kind"].as_str()).unwrap_or(""),
        last.and_then(|e| e["message"].as_str()).unwrap_or(""),
    )
}

fn short(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn select(name: &str, label: &str, options: &[(&str, &str)], current: &str) -> String {
    let mut out = format!("<label>{label} <select name=\"{name}\">");
    for (value, text) in options {
        let sel = if *value == current { " selected" } else { "" };
        let _ = write!(
            out,
            "<option value=\"{}\"{sel}>{}</option>",
            esc(value),
            esc(text)
        );
    }
    out.push_str("</select></label>");
    out
}

/// `GET /admin/ui/dead-letters`.
pub async fn list(
    PageSession(session, console): PageSession,
    Extension(api): Extension<Api>,
    Query(q): Query<ListQuery>,
) -> Response {
    let state = q.state.as_deref().unwrap_or("dead");
    let kind = q.error_kind.as_deref().unwrap_or("").trim();
    let service = q.service.as_deref().unwrap_or("");
    let since_raw = q.since.as_deref().unwrap_or("");
    let until_raw = q.until.as_deref().unwrap_or("");
    let limit = q.limit.unwrap_or(PAGE_SIZE).clamp(1, 200).to_string();
    let view = console.dead_letter_view();
    let services = view.services.clone();

    let mut problems = Vec::new();
    let mut time = |raw: &str| {
        if raw.trim().is_empty() {
            return String::new();
        }
        rfc3339(raw).unwrap_or_else(|e| {
            problems.push(e);
            String::new()
        })
    };
    let since = time(since_raw);
    let until = time(until_raw);
    // The filter as the admin API takes it (no paging): what bulk replay and purge act on.
    let filter = html::query(&[
        ("state", state),
        ("error_kind", kind),
        ("since", &since),
        ("until", &until),
    ]);
    let after = q.after.as_deref().unwrap_or("");
    let listing = api
        .get(&format!(
            "/admin/dlq?{}",
            html::query(&[
                ("state", state),
                ("error_kind", kind),
                ("since", &since),
                ("until", &until),
                ("limit", &limit),
                ("after", after),
            ])
        ))
        .await;

    let states = [
        ("dead", "dead"),
        ("retrying", "retrying"),
        ("pending", "pending"),
        ("running", "running"),
        ("done", "done"),
    ];
    let mut service_options = vec![("", "any")];
    service_options.extend(services.iter().map(|s| (s.as_str(), s.as_str())));
    let service_select = if services.is_empty() {
        String::new()
    } else {
        select("service", "Service", &service_options, service)
    };
    let mut body = format!(
        r#"<form class="filters" method="get" action="{base}/dead-letters">
{state_select}
<label>Error kind <input name="error_kind" value="{kind}" placeholder="downstream_http_503" size="22"></label>
{service_select}
<label>Changed since (UTC) <input type="datetime-local" name="since" value="{since}"></label>
<label>until (UTC) <input type="datetime-local" name="until" value="{until}"></label>
<button type="submit">Filter</button>
<a href="{base}/dead-letters">Clear</a>
</form>"#,
        base = super::BASE,
        state_select = select("state", "State", &states, state),
        service_select = service_select,
        kind = esc(kind),
        since = esc(since_raw),
        until = esc(until_raw),
    );
    for p in &problems {
        let _ = write!(body, "<p class=\"flash bad\" role=\"alert\">{}</p>", esc(p));
    }
    let page = match listing {
        Ok(v) => v,
        Err(e) => {
            body.push_str(&html::error_box(&e));
            return html::page(
                &console,
                "Dead letters",
                "/dead-letters",
                &session.csrf,
                &body,
            );
        }
    };
    let all = page["messages"].as_array().cloned().unwrap_or_default();
    let fetched = all.len();
    let shown: Vec<&Value> = all
        .iter()
        .filter(|m| service.is_empty() || service_of(m, &services) == Some(service))
        .collect();

    // Bulk actions: by the filter through the admin API, or one by one for a service filter.
    body.push_str("<div class=\"bulk\">");
    if service.is_empty() {
        body.push_str(&html::action_button(
            "Replay all matching",
            "POST",
            &format!("/admin/dlq/replay?{filter}"),
            Some("Replay every message matching this filter (not only this page)?"),
        ));
        body.push_str(&html::action_button(
            "Purge all matching…",
            "POST",
            &format!("/admin/dlq/purge?{filter}"),
            Some("Delete every message matching this filter, not only this page? This cannot be undone."),
        ));
    } else {
        let ids: Vec<String> = shown.iter().map(|m| html::text(m, "id")).collect();
        let _ = write!(
            body,
            "<button type=\"button\" class=\"action\" data-method=\"POST\" data-each=\"/admin/dlq/{{id}}/replay\" data-ids=\"{ids}\">Replay the {n} shown</button>\
             <button type=\"button\" class=\"action\" data-method=\"DELETE\" data-each=\"/admin/dlq/{{id}}\" data-ids=\"{ids}\" data-confirm=\"Delete the {n} messages shown? This cannot be undone.\">Purge the {n} shown…</button>",
            ids = esc(&ids.join(" ")),
            n = shown.len(),
        );
    }
    body.push_str("</div>");

    if shown.is_empty() {
        body.push_str("<p class=\"empty\">No message matches.</p>");
    } else {
        body.push_str(
            "<table class=\"list\"><caption class=\"sr-only\">Messages</caption><thead><tr>\
             <th scope=\"col\" class=\"w-id\">Message</th>",
        );
        if let Some(t) = view.group_title() {
            let _ = write!(body, "<th scope=\"col\">{}</th>", esc(t));
        }
        if !services.is_empty() {
            body.push_str("<th scope=\"col\">Service</th>");
        }
        body.push_str(
            "<th scope=\"col\">Last error</th><th scope=\"col\" class=\"num\">Attempts</th>\
             <th scope=\"col\">Changed</th><th scope=\"col\"><span class=\"sr-only\">Actions</span></th></tr></thead><tbody>",
        );
        for m in &shown {
            let id = html::text(m, "id");
            let (kind, message) = last_error(m);
            let state = html::s(m, "state");
            let replay = if matches!(state, "dead" | "retrying") {
                html::action_button(
                    "Replay",
                    "POST",
                    &format!("/admin/dlq/{}/replay", url_part(&id)),
                    None,
                )
            } else {
                String::new()
            };
            let _ = write!(
                body,
                "<tr><td><a href=\"{base}/dead-letters/{href}\">{wamid}</a><div class=\"sub\">{state}</div></td>\
                 {from}{svc}<td><code>{kind}</code><div class=\"sub\">{message}</div></td>\
                 <td class=\"num\">{attempts}/{max}</td><td>{changed}</td><td>{replay}</td></tr>",
                base = super::BASE,
                href = url_part(&id),
                wamid = esc(&short(&view.label(m), 40)),
                state = html::badge(state),
                from = if view.group_title().is_some() {
                    format!("<td>{}</td>", esc(&view.group_of(m)))
                } else {
                    String::new()
                },
                svc = if services.is_empty() {
                    String::new()
                } else {
                    format!("<td>{}</td>", esc(service_of(m, &services).unwrap_or("—")))
                },
                kind = esc(kind),
                message = esc(&short(&html::mask_digits(message), 140)),
                attempts = html::text(m, "attempts"),
                max = html::text(m, "max_attempts"),
                changed = html::time(m, "updated_at"),
            );
        }
        body.push_str("</tbody></table>");
    }
    // Paging: a full page from the store may have more after it.
    let mut pager = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
    let base_query = html::query(&[
        ("state", state),
        ("error_kind", kind),
        ("service", service),
        ("since", since_raw),
        ("until", until_raw),
    ]);
    if !after.is_empty() {
        let _ = write!(
            pager,
            "<a href=\"{}/dead-letters?{}\">First page</a>",
            super::BASE,
            esc(&base_query)
        );
    }
    if fetched as u32 >= q.limit.unwrap_or(PAGE_SIZE).clamp(1, 200)
        && let Some(next) = page["next_after"].as_str()
    {
        let _ = write!(
            pager,
            "<a href=\"{}/dead-letters?{}&amp;after={}\">Next page</a>",
            super::BASE,
            esc(&base_query),
            url_part(next)
        );
    }
    pager.push_str("</nav>");
    body.push_str(&pager);
    html::page(
        &console,
        "Dead letters",
        "/dead-letters",
        &session.csrf,
        &body,
    )
}

/// `GET /admin/ui/dead-letters/{id}`: one message, its masked payload and every attempt.
pub async fn message(
    PageSession(session, console): PageSession,
    Extension(api): Extension<Api>,
    Path(id): Path<String>,
) -> Response {
    let m = match api.get(&format!("/admin/dlq/{}", url_part(&id))).await {
        Ok(m) => m,
        Err(e) => {
            let body = format!(
                "{}<p><a href=\"{}/dead-letters\">Back to the list</a></p>",
                html::error_box(&e),
                super::BASE
            );
            return html::page(&console, "Message", "/dead-letters", &session.csrf, &body);
        }
    };
    let view = console.dead_letter_view();
    let services = view.services.clone();
    let state = html::s(&m, "state");
    let url_id = url_part(&html::text(&m, "id"));
    let mut actions = String::new();
    if matches!(state, "dead" | "retrying") {
        actions.push_str(&html::action_button(
            "Replay",
            "POST",
            &format!("/admin/dlq/{url_id}/replay"),
            None,
        ));
    }
    if state == "retrying" {
        actions.push_str(&html::action_button(
            "Run now",
            "POST",
            &format!("/admin/dlq/{url_id}/run-now"),
            None,
        ));
    }
    actions.push_str(&html::action_button(
        "Delete…",
        "DELETE",
        &format!("/admin/dlq/{url_id}"),
        Some("Delete this message? This cannot be undone."),
    ));
    let delivered = if state == "done" {
        " <span class=\"sub\">(processed)</span>"
    } else {
        ""
    };
    let mut body = format!(
        r#"<p><a href="{base}/dead-letters">← Dead letters</a></p>
<div class="bulk" data-after-delete="{base}/dead-letters">{actions}</div>
<dl class="facts">
<dt>State</dt><dd id="message-state">{state}{delivered}</dd>
<dt>Message id</dt><dd><code>{wamid}</code></dd>
<dt>Queue id</dt><dd><code>{id}</code></dd>
{from}{svc}
<dt>Attempts</dt><dd>{attempts} of {max}</dd>
<dt>Received</dt><dd>{created}</dd>
<dt>Last change</dt><dd>{updated}</dd>
<dt>Due</dt><dd>{run_at}</dd>
<dt>Waiting since</dt><dd>{waiting}</dd>
<dt>Correlation id</dt><dd><code>{corr}</code></dd>
</dl>
<h2>Attempts</h2>"#,
        base = super::BASE,
        state = html::badge(state),
        wamid = esc(&view.label(&m)),
        id = esc(&html::text(&m, "id")),
        from = view.group_title().map_or_else(String::new, |t| format!(
            "<dt>{}</dt><dd>{}</dd>",
            esc(t),
            esc(&view.group_of(&m))
        )),
        svc = if services.is_empty() {
            String::new()
        } else {
            format!(
                "<dt>Service</dt><dd>{}</dd>",
                esc(service_of(&m, &services).unwrap_or("—"))
            )
        },
        attempts = html::text(&m, "attempts"),
        max = html::text(&m, "max_attempts"),
        created = html::time(&m, "created_at"),
        updated = html::time(&m, "updated_at"),
        run_at = html::time(&m, "run_at"),
        waiting = html::time(&m, "waiting_since"),
        corr = esc(&html::text(&m, "correlation_id")),
    );
    let errors = m["errors"].as_array().cloned().unwrap_or_default();
    if errors.is_empty() {
        body.push_str("<p class=\"empty\">No failed attempt.</p>");
    } else {
        body.push_str(
            "<table class=\"list\"><thead><tr><th scope=\"col\" class=\"num\">Attempt</th><th scope=\"col\">At</th>\
             <th scope=\"col\">Kind</th><th scope=\"col\">Error</th></tr></thead><tbody>",
        );
        for e in &errors {
            let snoozed = if e["snoozed"].as_bool() == Some(true) {
                " <span class=\"sub\">(snoozed: no attempt spent)</span>"
            } else {
                ""
            };
            let _ = write!(
                body,
                "<tr><td class=\"num\">{}</td><td>{}</td><td><code>{}</code>{snoozed}</td><td>{}</td></tr>",
                html::text(e, "attempt"),
                html::time(e, "at"),
                esc(html::s(e, "kind")),
                esc(&html::mask_digits(html::s(e, "message"))),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>Payload <span class=\"sub\">(phone numbers masked)</span></h2>");
    body.push_str(&html::json_block(&m["payload"]));
    html::page(&console, "Message", "/dead-letters", &session.csrf, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_service_is_read_from_the_last_error() {
        let services = vec!["jobs".to_owned(), "ai-agent".to_owned()];
        let m = |text: &str| json!({"errors": [{"message": "x"}, {"message": text}]});
        assert_eq!(
            service_of(&m("jobs answered HTTP 503"), &services),
            Some("jobs")
        );
        assert_eq!(
            service_of(&m("ai-agent: timed out"), &services),
            Some("ai-agent")
        );
        assert_eq!(
            service_of(&m("no healthy endpoint for service \"jobs\""), &services),
            Some("jobs")
        );
        assert_eq!(service_of(&m("graph API answered 500"), &services), None);
        assert_eq!(service_of(&json!({}), &services), None);
    }

    #[test]
    fn form_times_are_utc() {
        assert_eq!(
            rfc3339("2026-11-27T18:06").unwrap(),
            "2026-11-27T18:06:00+00:00"
        );
        assert_eq!(
            rfc3339("2026-11-27T20:06:00+02:00").unwrap(),
            "2026-11-27T18:06:00+00:00"
        );
        assert!(rfc3339("yesterday").is_err());
    }
}
