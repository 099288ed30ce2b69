//! Sagas: by state, and one saga's steps; a parked one can be retried (back to work with
//! fresh retries) or resolved (marked handled by hand, with a note; confirmed first).

use std::fmt::Write as _;

use axum::Extension;
use axum::extract::{Path, Query};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::api::Api;
use super::auth::PageSession;
use super::html::{self, esc, url_part};

/// The list's filter.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
}

const STATES: [&str; 6] = [
    "running",
    "completed",
    "compensating",
    "compensated",
    "failed",
    "resolved",
];

/// `GET /admin/ui/sagas?state=`.
pub async fn list(
    PageSession(session, console): PageSession,
    Extension(api): Extension<Api>,
    Query(q): Query<ListQuery>,
) -> Response {
    let state = q
        .state
        .as_deref()
        .filter(|s| STATES.contains(s))
        .unwrap_or("");
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"{}/sagas\"><label>State <select name=\"state\"><option value=\"\">any</option>",
        super::BASE
    );
    for s in STATES {
        let label = if s == "failed" { "failed (parked)" } else { s };
        let sel = if s == state { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{s}\"{sel}>{label}</option>");
    }
    body.push_str("</select></label><button type=\"submit\">Filter</button></form>");
    let path = format!(
        "/admin/sagas?{}",
        html::query(&[("state", state), ("limit", "100")])
    );
    match api.get(&path).await {
        Err(e) => body.push_str(&html::error_box(&e)),
        Ok(v) => {
            let sagas = v["sagas"].as_array().cloned().unwrap_or_default();
            if sagas.is_empty() {
                body.push_str("<p class=\"empty\">No saga matches.</p>");
            } else {
                body.push_str(
                    "<table class=\"list\"><thead><tr><th scope=\"col\">Saga</th><th scope=\"col\">State</th>\
                     <th scope=\"col\">Created</th><th scope=\"col\">Updated</th><th scope=\"col\">Lease</th></tr></thead><tbody>",
                );
                for s in &sagas {
                    let id = html::text(s, "id");
                    let _ = write!(
                        body,
                        "<tr><td><a href=\"{}/sagas/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        super::BASE,
                        url_part(&id),
                        esc(&id),
                        html::badge(html::s(s, "state")),
                        html::time(s, "created_at"),
                        html::time(s, "updated_at"),
                        esc(&html::text(s, "lease_owner")),
                    );
                }
                body.push_str("</tbody></table>");
            }
        }
    }
    html::page(&console, "Sagas", "/sagas", &session.csrf, &body)
}

/// `GET /admin/ui/sagas/{id}`: the saga's steps and, when parked, the retry button.
pub async fn saga(
    PageSession(session, console): PageSession,
    Extension(api): Extension<Api>,
    Path(id): Path<String>,
) -> Response {
    let back = format!("<p><a href=\"{}/sagas\">← Sagas</a></p>", super::BASE);
    let v = match api.get(&format!("/admin/sagas/{}", url_part(&id))).await {
        Ok(v) => v,
        Err(e) => {
            let body = format!("{back}{}", html::error_box(&e));
            return html::page(&console, "Saga", "/sagas", &session.csrf, &body);
        }
    };
    let summary = &v["saga"];
    let state = html::s(summary, "state");
    let mut body = back;
    if state == "failed" {
        body.push_str("<div class=\"bulk\">");
        body.push_str(&html::action_button(
            "Retry",
            "POST",
            &format!("/admin/sagas/{}/retry", url_part(&id)),
            None,
        ));
        body.push_str(&html::action_button(
            "Resolve…",
            "POST",
            &format!(
                "/admin/sagas/{}/resolve?{}",
                url_part(&id),
                html::query(&[("note", "resolved by hand in the console")])
            ),
            Some("Mark this saga as handled by hand? It will not be retried or compensated any more."),
        ));
        let _ = write!(
            body,
            " <span class=\"sub\">Retry: back to work with fresh retries; {}. Resolve: you handled it outside the service.</span></div>",
            esc(console.saga_retry_hint())
        );
    }
    let _ = write!(
        body,
        "<dl class=\"facts\"><dt>Saga</dt><dd><code>{}</code></dd><dt>State</dt><dd>{}</dd><dt>Created</dt><dd>{}</dd><dt>Updated</dt><dd>{}</dd></dl><h2>Steps</h2>",
        esc(&html::text(summary, "id")),
        html::badge(state),
        html::time(summary, "created_at"),
        html::time(summary, "updated_at"),
    );
    body.push_str(
        "<table class=\"list\"><thead><tr><th scope=\"col\">Step</th><th scope=\"col\">Status</th>\
         <th scope=\"col\" class=\"num\">Attempts</th><th scope=\"col\" class=\"num\">Undo attempts</th>\
         <th scope=\"col\">Started</th><th scope=\"col\">Errors</th></tr></thead><tbody>",
    );
    for s in v["steps"].as_array().map_or(&[][..], Vec::as_slice) {
        let errors: Vec<String> = s["errors"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|e: &Value| {
                format!(
                    "<li>{} {}#{}: {}</li>",
                    html::time(e, "at"),
                    if e["compensation"].as_bool() == Some(true) {
                        "undo "
                    } else {
                        ""
                    },
                    html::text(e, "attempt"),
                    // The saga log names it `error`.
                    esc(&html::mask_digits(html::s(e, "error")))
                )
            })
            .collect();
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td><ul class=\"errors\">{}</ul></td></tr>",
            esc(html::s(s, "name")),
            html::badge(html::s(s, "status")),
            html::text(s, "attempts"),
            html::text(s, "compensation_attempts"),
            html::time(s, "started_at"),
            errors.join(""),
        );
    }
    body.push_str("</tbody></table><h2>Input <span class=\"sub\">(numbers masked)</span></h2>");
    body.push_str(&html::json_block(&v["input"]));
    html::page(&console, "Saga", "/sagas", &session.csrf, &body)
}
