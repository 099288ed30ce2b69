//! Breakers and services: every breaker with its metrics and manual control, then each
//! registry service's endpoints with their health.

use std::fmt::Write as _;

use axum::Extension;
use axum::response::Response;
use serde_json::Value;

use super::api::Api;
use super::auth::PageSession;
use super::html::{self, esc, url_part};

fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "—".to_owned(), |r| format!("{r:.0} %"))
}

/// An endpoint URL as shown: scheme, host, port and path, without user info or query (either
/// can hold a credential).
pub fn display_url(raw: &str) -> String {
    let Ok(uri) = raw.parse::<http::Uri>() else {
        return "(not a URL)".to_owned();
    };
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            let host = authority
                .as_str()
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, host)| host);
            format!("{scheme}://{host}{}", uri.path())
        }
        _ => "(not a URL)".to_owned(),
    }
}

/// `GET /admin/ui/breakers`.
pub async fn page(
    PageSession(session, console): PageSession,
    Extension(api): Extension<Api>,
) -> Response {
    let mut body = String::from("<h2>Breakers</h2>");
    match api.get("/admin/breakers").await {
        Err(e) => body.push_str(&html::error_box(&e)),
        Ok(v) => {
            body.push_str(
                "<table class=\"list\"><thead><tr><th scope=\"col\" class=\"w-name\">Breaker</th><th scope=\"col\">State</th>\
                 <th scope=\"col\" class=\"num\">Failure rate</th><th scope=\"col\" class=\"num\">Calls</th>\
                 <th scope=\"col\" class=\"num\">Failures</th><th scope=\"col\" class=\"num\">Slow</th>\
                 <th scope=\"col\" class=\"num\">Refused</th><th scope=\"col\">Half-open in</th>\
                 <th scope=\"col\" class=\"w-controls\">Control</th></tr></thead><tbody>",
            );
            for b in v["breakers"].as_array().map_or(&[][..], Vec::as_slice) {
                let name = html::s(b, "name");
                let path = url_part(name);
                let half_open = b["time_until_half_open_ms"]
                    .as_f64()
                    .map_or_else(|| "—".to_owned(), |ms| html::seconds(ms / 1000.0));
                let service = b["service"]
                    .as_str()
                    .map(|s| format!("<div class=\"sub\">service {}</div>", esc(s)))
                    .unwrap_or_default();
                let _ = write!(
                    body,
                    "<tr data-breaker=\"{name_attr}\"><th scope=\"row\">{name_text}{service}</th><td>{state}</td>\
                     <td class=\"num\">{rate}</td><td class=\"num\">{calls}</td><td class=\"num\">{failures}</td>\
                     <td class=\"num\">{slow}</td><td class=\"num\">{refused}</td><td>{half_open}</td>\
                     <td class=\"controls\">{open}{close}{reset}</td></tr>",
                    name_attr = esc(name),
                    name_text = esc(name),
                    state = html::badge(html::s(b, "state")),
                    rate = percent(&b["failure_rate"]),
                    calls = html::text(b, "calls"),
                    failures = html::text(b, "failures"),
                    slow = html::text(b, "slow_calls"),
                    refused = html::text(b, "not_permitted"),
                    open = labelled("Open", name, &format!("/admin/breakers/{path}/open")),
                    close = labelled("Close", name, &format!("/admin/breakers/{path}/close")),
                    reset = labelled("Reset", name, &format!("/admin/breakers/{path}/reset")),
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    if !console.shows_registry() {
        return html::page(&console, "Breakers", "/breakers", &session.csrf, &body);
    }
    body.push_str("<h2>Services</h2>");
    match api.get("/admin/registry").await {
        Err(e) => body.push_str(&html::error_box(&e)),
        Ok(v) => {
            for s in v["services"].as_array().map_or(&[][..], Vec::as_slice) {
                let _ = write!(
                    body,
                    "<section class=\"service\"><h3>{name} {status}</h3><p class=\"sub\">{eligible} of {total} endpoints eligible; balancing {balance}{panic}</p>\
                     <table class=\"list\"><thead><tr><th scope=\"col\" class=\"w-url\">Endpoint</th><th scope=\"col\">State</th><th scope=\"col\">Health check</th>\
                     <th scope=\"col\">Breaker</th><th scope=\"col\" class=\"num\">In flight</th><th scope=\"col\">Last check</th><th scope=\"col\">Last error</th></tr></thead><tbody>",
                    name = esc(html::s(s, "name")),
                    status = html::badge(html::s(s, "status")),
                    eligible = html::text(s, "eligible"),
                    total = html::text(s, "total"),
                    balance = esc(html::s(s, "balance")),
                    panic = if s["panic_mode"].as_bool() == Some(true) {
                        "; <strong>panic mode</strong> (no healthy endpoint: trying all)"
                    } else {
                        ""
                    },
                );
                for e in s["endpoints"].as_array().map_or(&[][..], Vec::as_slice) {
                    let _ = write!(
                        body,
                        "<tr><td><code>{url}</code></td><td>{state}</td><td>{checked}</td><td>{breaker}</td>\
                         <td class=\"num\">{in_flight}</td><td>{last}</td><td>{error}</td></tr>",
                        url = esc(&display_url(html::s(e, "url"))),
                        state = html::badge(html::s(e, "state")),
                        checked = esc(html::s(e, "checked_state")),
                        breaker = html::badge(html::s(e, "breaker")),
                        in_flight = html::text(e, "in_flight"),
                        last = html::time(e, "last_check"),
                        error = esc(&html::text(e, "last_error")),
                    );
                }
                body.push_str("</tbody></table></section>");
            }
        }
    }
    html::page(
        &console,
        "Breakers & services",
        "/breakers",
        &session.csrf,
        &body,
    )
}

/// An action button whose accessible name says which breaker it acts on.
fn labelled(action: &str, name: &str, url: &str) -> String {
    html::action_button(action, "POST", url, None).replacen(
        "<button ",
        &format!("<button aria-label=\"{} {}\" ", esc(action), esc(name)),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_lose_their_credentials() {
        assert_eq!(
            display_url("http://user:s3cret@10.0.0.7:8080/handle?key=abc"),
            "http://10.0.0.7:8080/handle"
        );
        assert_eq!(display_url("nonsense"), "(not a URL)");
        assert_eq!(display_url("http://10.0.0.7:8080"), "http://10.0.0.7:8080/");
    }
}
