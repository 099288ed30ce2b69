//! Conversations: look one up by the sender's number; its state, transition history and last
//! messages. The number is taken from a query parameter (never the path, which is logged) and
//! shown masked.

use std::fmt::Write as _;

use axum::Extension;
use axum::extract::Query;
use axum::response::Response;
use serde::Deserialize;

use super::api::Api;
use super::auth::PageSession;
use super::html::{self, esc, url_part};

/// The lookup form.
#[derive(Debug, Default, Deserialize)]
pub struct Lookup {
    number: Option<String>,
}

/// `GET /admin/ui/conversations?number=`.
pub async fn page(
    PageSession(session, console): PageSession,
    Extension(api): Extension<Api>,
    Query(q): Query<Lookup>,
) -> Response {
    let number: String = q
        .number
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    let number = number.trim_start_matches('+');
    let mut body = format!(
        r#"<form class="filters" method="get" action="{}/conversations">
<label>Sender's number <input name="number" inputmode="tel" autocomplete="off" placeholder="country code and number" required></label>
<button type="submit">Look up</button>
</form>"#,
        super::BASE
    );
    let done = |body: &str| {
        html::page(
            &console,
            "Conversations",
            "/conversations",
            &session.csrf,
            body,
        )
    };
    if number.is_empty() {
        return done(&body);
    }
    let c = match api
        .get(&format!("/admin/conversations/{}", url_part(number)))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            let _ = write!(
                body,
                "<h2>{}</h2>{}",
                esc(&crate::mask::mask_phone(number)),
                html::error_box(&e)
            );
            return done(&body);
        }
    };
    let ctx = &c["context"];
    let _ = write!(
        body,
        r#"<h2>{who}</h2>
<dl class="facts">
<dt>State</dt><dd id="conversation-state">{state}</dd>
<dt>Since</dt><dd>{entered}</dd>
<dt>Talking to</dt><dd>{intent}</dd>
<dt>Fallback replies</dt><dd>{fallbacks}</dd>
<dt>Last error</dt><dd>{last_error}</dd>
<dt>Version</dt><dd>{version}</dd>
</dl>
<h2>History</h2>"#,
        who = esc(&crate::mask::mask_phone(number)),
        state = html::badge(html::s(&c, "state")),
        entered = html::time(&c, "entered_at"),
        intent = esc(&html::text(ctx, "intent")),
        fallbacks = html::text(ctx, "fallback_attempts"),
        last_error = esc(&html::mask_digits(&html::text(ctx, "last_error"))),
        version = html::text(&c, "version"),
    );
    let history = c["history"].as_array().cloned().unwrap_or_default();
    if history.is_empty() {
        body.push_str("<p class=\"empty\">No transition yet.</p>");
    } else {
        body.push_str(
            "<table class=\"list\"><thead><tr><th scope=\"col\">At</th><th scope=\"col\">Event</th>\
             <th scope=\"col\">From</th><th scope=\"col\">To</th><th scope=\"col\" class=\"num\">Times</th></tr></thead><tbody>",
        );
        for h in history.iter().rev() {
            let _ = write!(
                body,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                html::time(h, "at"),
                esc(html::s(h, "event")),
                esc(html::s(h, "from")),
                esc(html::s(h, "to")),
                h["count"].as_u64().unwrap_or(1),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>Last messages <span class=\"sub\">(numbers masked)</span></h2>");
    let messages = ctx["last_messages"].as_array().cloned().unwrap_or_default();
    if messages.is_empty() {
        body.push_str("<p class=\"empty\">None kept.</p>");
    } else {
        body.push_str("<ol class=\"messages\">");
        for m in &messages {
            let role = html::s(m, "role");
            let _ = write!(
                body,
                "<li class=\"{}\"><span class=\"role\">{}</span> {}</li>",
                if role == "user" { "user" } else { "bot" },
                esc(role),
                esc(&html::mask_digits(html::s(m, "text"))),
            );
        }
        body.push_str("</ol>");
    }
    done(&body)
}
