//! HTML by hand: escaping, the page layout, and the few formatting helpers every page uses.
//!
//! Every value that did not come from this file goes through [`esc`] (text and attributes
//! alike: it escapes both quotes), and every phone number through the masking helpers.
//! Pages are built with `format!` into `String`s; there is no template engine to configure,
//! so the one rule above is the whole of the security model of the markup.

use std::fmt::Write as _;

use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

/// `s` with `& < > " '` escaped: safe in element text and in quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded for a URL path segment or a query value (everything but unreserved
/// characters is encoded, `/` included).
pub fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A query string (`a=1&b=2`, no `?`) of the pairs whose value is not empty.
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_part(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Every run of 8 or more digits in `s` (with its `+`, if any) masked as a phone number:
/// message texts and error messages can carry numbers too.
pub fn mask_digits(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let digits = run.trim_start_matches('+');
        if digits.len() >= 8 {
            out.push_str(&crate::mask::mask_phone(run));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in s.chars() {
        if c.is_ascii_digit() || (c == '+' && run.is_empty()) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A JSON value with every string's phone numbers masked ([`mask_digits`]), and the values of
/// keys that name a person's number (`from`, `wa_id`, `to`, ...) masked whole.
pub fn mask_json(v: &Value) -> Value {
    const NUMBER_KEYS: [&str; 6] = ["from", "wa_id", "to", "recipient_id", "group_key", "phone"];
    match v {
        Value::String(s) => Value::String(mask_digits(s)),
        Value::Array(a) => Value::Array(a.iter().map(mask_json).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let masked = match v {
                        Value::String(s) if NUMBER_KEYS.contains(&k.as_str()) => {
                            Value::String(crate::mask::mask_phone(s))
                        }
                        other => mask_json(other),
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A JSON value as pretty, masked, escaped text for a `<pre>`.
pub fn json_block(v: &Value) -> String {
    let text = serde_json::to_string_pretty(&mask_json(v)).unwrap_or_default();
    format!("<pre class=\"json\">{}</pre>", esc(&text))
}

/// The string at `key` of `v`, or `""`.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A number or string at `key` of `v` as text, `—` when absent or null.
pub fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "—".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => other.to_string(),
    }
}

/// An RFC 3339 time from the admin API as `2026-11-27 18:06:46 UTC` in a `<time>`, or `—`.
pub fn time(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_str) {
        Some(raw) => time_str(raw),
        None => "—".to_owned(),
    }
}

/// [`time`] of a raw RFC 3339 string.
pub fn time_str(raw: &str) -> String {
    match DateTime::parse_from_rfc3339(raw) {
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            format!(
                "<time datetime=\"{}\">{}</time>",
                esc(&t.to_rfc3339()),
                t.format("%Y-%m-%d %H:%M:%S UTC")
            )
        }
        Err(_) => esc(raw),
    }
}

/// A duration in seconds as `42 s`, `3 min 5 s`, `2 h 4 min`.
pub fn seconds(total: f64) -> String {
    let s = total.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// A state word in a badge whose class (colour) follows the word.
pub fn badge(state: &str) -> String {
    let class = match state {
        "closed" | "healthy" | "done" | "completed" | "ok" | "compensated" => "good",
        "open"
        | "forced_open"
        | "dead"
        | "failed"
        | "unhealthy"
        | "ejected"
        | "down"
        | "compensation_failed" => "bad",
        "half_open" | "retrying" | "degraded" | "compensating" | "running" | "pending" => "warn",
        _ => "plain",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(state))
}

/// A `<button>` that calls the admin API (see `console.js`): `method` on `url`, the outcome
/// shown in the status line; `confirm` asks first; `reload` reloads the page after success.
pub fn action_button(label: &str, method: &str, url: &str, confirm: Option<&str>) -> String {
    let confirm = confirm
        .map(|c| format!(" data-confirm=\"{}\"", esc(c)))
        .unwrap_or_default();
    format!(
        "<button type=\"button\" class=\"action\" data-method=\"{}\" data-url=\"{}\"{confirm}>{}</button>",
        esc(method),
        esc(url),
        esc(label)
    )
}

/// A whole page of `console`: head (assets, the CSRF token for the scripts), navigation with
/// `active` (a page's path under `/admin/ui`, `""` for the overview) marked, the status line,
/// and `body`.
pub fn page(
    console: &super::Console,
    title: &str,
    active: &str,
    csrf: &str,
    body: &str,
) -> Response {
    let mut nav = String::new();
    for (path, label) in console.nav() {
        let current = if path.as_str() == active {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            nav,
            "<a href=\"{}{}\"{current}>{}</a>",
            super::BASE,
            esc(&path),
            esc(&label)
        );
    }
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="steadfast-csrf" content="{csrf}">
<title>{title} · Steadfast console</title>
<link rel="icon" href="{base}/assets/icon.svg">
<link rel="stylesheet" href="{base}/assets/console.css">
<script src="{base}/assets/console.js" defer></script>
</head>
<body>
<header class="top"><nav aria-label="Console pages"><span class="brand">{brand}</span>{nav}</nav>
<button type="button" class="logout" data-logout>Log out</button></header>
<main>
<h1>{title}</h1>
<p id="flash" class="flash" role="status" aria-live="polite" hidden></p>
{body}
</main>
</body>
</html>"#,
        csrf = esc(csrf),
        title = esc(title),
        base = super::BASE,
        brand = esc(console.brand_name()),
    );
    secure(Html(html).into_response())
}

/// The login page (no navigation, no CSRF token): `error` shown above the form.
pub fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let error = error
        .map(|e| format!("<p class=\"flash bad\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · Steadfast console</title>
<link rel="icon" href="{base}/assets/icon.svg">
<link rel="stylesheet" href="{base}/assets/console.css">
</head>
<body class="login">
<main>
<h1>Steadfast console</h1>
{error}
<form method="post" action="{base}/login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>
<p class="hint">The token is the service's <code>admin.token</code> (<code>ADMIN_TOKEN</code>). It is kept in an HttpOnly cookie for this browser session.</p>
</main>
</body>
</html>"#,
        base = super::BASE,
    );
    secure((status, Html(html)).into_response())
}

/// The headers every console answer carries: no framing, no inline script or style, no
/// caching of pages that show personal data, no referrer.
pub fn secure(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A problem from the admin API, as a short message box.
pub fn error_box(e: &super::api::ApiError) -> String {
    format!(
        "<p class=\"flash bad\" role=\"alert\">{} ({})</p>",
        esc(&e.detail),
        e.status.as_u16()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn masks_numbers_inside_text_and_by_key() {
        assert_eq!(
            mask_digits("call +250788123456 or 0788123456, code 1234"),
            "call +250788***456 or +078812***456, code 1234"
        );
        let v = mask_json(
            &json!({"from": "250788123456", "text": "mine is 250788654321",
            "nested": [{"wa_id": "16505551234"}], "n": 5}),
        );
        assert_eq!(v["from"], "+250788***456");
        assert_eq!(v["text"], "mine is +250788***321");
        assert_eq!(v["nested"][0]["wa_id"], "+165055***234");
        assert_eq!(v["n"], 5);
    }

    #[test]
    fn url_parts_encode_everything_reserved() {
        assert_eq!(
            url_part("reply-actions/wamid.A=="),
            "reply-actions%2Fwamid.A%3D%3D"
        );
        assert_eq!(query(&[("a", "x y"), ("b", ""), ("c", "1")]), "a=x%20y&c=1");
    }
}
