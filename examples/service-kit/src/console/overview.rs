//! The overview: queue depth by state over the last hour (an inline SVG chart drawn here),
//! dead letters, oldest due age, throughput, breakers open. The page fetches
//! `/admin/ui/overview/live` every few seconds and swaps the figures in place.

use std::fmt::Write as _;

use axum::Extension;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::api::Api;
use super::auth::PageSession;
use super::html::{self, esc};

/// `GET /admin/ui`.
pub async fn page(
    PageSession(session, console): PageSession,
    Extension(api): Extension<Api>,
) -> Response {
    let body = format!(
        "<div id=\"live\" data-live=\"{}/overview/live\" data-every=\"5000\">{}</div>",
        super::BASE,
        figures(&api).await
    );
    html::page(&console, "Overview", "", &session.csrf, &body)
}

/// `GET /admin/ui/overview/live`: the figures alone, for the page's refresh.
pub async fn live(PageSession(..): PageSession, Extension(api): Extension<Api>) -> Response {
    html::secure(Html(figures(&api).await).into_response())
}

/// The series drawn, with their colours (also in the legend).
const SERIES: [(&str, &str); 4] = [
    ("pending", "#2563eb"),
    ("running", "#059669"),
    ("retrying", "#d97706"),
    ("dead", "#dc2626"),
];

async fn figures(api: &Api) -> String {
    let stats = match api.get("/admin/stats").await {
        Ok(v) => v,
        Err(e) => return html::error_box(&e),
    };
    let latest = &stats["latest"];
    let count = |k: &str| latest.get(k).and_then(Value::as_u64).unwrap_or(0);
    let throughput = stats["throughput_per_minute"]
        .as_f64()
        .map_or_else(|| "—".to_owned(), |t| format!("{t:.0}"));
    let open: Vec<&str> = stats["breakers_open"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let open_list = if open.is_empty() {
        "none".to_owned()
    } else {
        open.iter().map(|n| esc(n)).collect::<Vec<_>>().join(", ")
    };
    let read_at = latest
        .get("at")
        .and_then(Value::as_str)
        .map_or_else(|| "not read yet".to_owned(), html::time_str);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<section class="cards" aria-label="Now">
<div class="card"><h2>Dead letters</h2><p class="big"><a href="{base}/dead-letters">{dead}</a></p></div>
<div class="card"><h2>Oldest due</h2><p class="big">{oldest}</p><p class="sub">waiting past its due time</p></div>
<div class="card"><h2>Throughput</h2><p class="big">{throughput}</p><p class="sub">processed per minute</p></div>
<div class="card"><h2>Breakers open</h2><p class="big"><a href="{base}/breakers">{n_open}</a></p><p class="sub">{open_list}</p></div>
</section>
<section aria-labelledby="depth-title">
<h2 id="depth-title">Queue depth, last hour <span class="sub">({queue}; read {read_at})</span></h2>
{chart}
<table class="compact"><caption>Now</caption><thead><tr><th scope="col">pending</th><th scope="col">running</th><th scope="col">retrying</th><th scope="col">dead</th><th scope="col">done (kept)</th></tr></thead>
<tbody><tr><td>{pending}</td><td>{running}</td><td>{retrying}</td><td>{dead}</td><td>{done}</td></tr></tbody></table>
</section>"#,
        base = super::BASE,
        dead = count("dead"),
        oldest = html::seconds(latest["oldest_due_age_seconds"].as_f64().unwrap_or(0.0)),
        n_open = open.len(),
        queue = esc(html::s(&stats, "queue")),
        chart = chart(&points(&stats), Utc::now()),
        pending = count("pending"),
        running = count("running"),
        retrying = count("retrying"),
        done = count("done"),
    );
    out
}

/// The points to draw: the minute samples, then the latest reading (up to 10 s old), so the
/// lines reach the present and a young process shows a line, not a dot.
fn points(stats: &Value) -> Vec<Value> {
    let mut points = stats["samples"].as_array().cloned().unwrap_or_default();
    let latest = &stats["latest"];
    fn at(v: &Value) -> Option<&str> {
        v.get("at").and_then(Value::as_str)
    }
    if latest.is_object() && at(latest) > points.last().and_then(at) {
        points.push(latest.clone());
    }
    points
}

/// An SVG line chart of `samples` (the admin API's `samples`) over the hour before `now`.
pub fn chart(samples: &[Value], now: DateTime<Utc>) -> String {
    const W: f64 = 960.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 48.0;
    const BOTTOM: f64 = 24.0;
    let points: Vec<(f64, &Value)> = samples
        .iter()
        .filter_map(|s| {
            let at = DateTime::parse_from_rfc3339(s.get("at")?.as_str()?).ok()?;
            let minutes_ago = (now - at.with_timezone(&Utc)).num_seconds() as f64 / 60.0;
            (0.0..=60.0)
                .contains(&minutes_ago)
                .then_some((60.0 - minutes_ago, s))
        })
        .collect();
    let max = points
        .iter()
        .flat_map(|(_, s)| SERIES.iter().map(|(k, _)| s[*k].as_u64().unwrap_or(0)))
        .max()
        .unwrap_or(0)
        .max(1);
    let x = |minute: f64| LEFT + minute / 60.0 * (W - LEFT - 8.0);
    let y = |v: u64| 8.0 + (1.0 - v as f64 / max as f64) * (H - BOTTOM - 8.0);
    let mut svg = format!(
        "<figure class=\"chart\"><svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"chart-title\">\
<title id=\"chart-title\">Queue depth by state over the last hour, one sample a minute; highest value {max}</title>\
<line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{W}\" y2=\"{b}\" stroke=\"#9ca3af\"/>\
<line x1=\"{LEFT}\" y1=\"8\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#9ca3af\"/>\
<text x=\"{tx}\" y=\"16\" text-anchor=\"end\" font-size=\"12\" fill=\"#374151\">{max}</text>\
<text x=\"{tx}\" y=\"{b}\" text-anchor=\"end\" font-size=\"12\" fill=\"#374151\">0</text>\
<text x=\"{LEFT}\" y=\"{ty}\" font-size=\"12\" fill=\"#374151\">60 min ago</text>\
<text x=\"{W}\" y=\"{ty}\" text-anchor=\"end\" font-size=\"12\" fill=\"#374151\">now</text>",
        b = H - BOTTOM,
        tx = LEFT - 6.0,
        ty = H - 6.0,
    );
    for (key, colour) in SERIES {
        let line: Vec<(f64, f64)> = points
            .iter()
            .map(|(m, s)| (x(*m), y(s[key].as_u64().unwrap_or(0))))
            .collect();
        if let [(cx, cy)] = line.as_slice() {
            let _ = write!(
                svg,
                "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"4\" fill=\"{colour}\"/>"
            );
        } else if !line.is_empty() {
            let pts: Vec<String> = line.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\" points=\"{}\"/>",
                pts.join(" ")
            );
        }
    }
    svg.push_str("</svg><figcaption class=\"legend\">");
    for (key, colour) in SERIES {
        let _ = write!(
            svg,
            "<span><svg width=\"14\" height=\"14\" aria-hidden=\"true\"><rect width=\"14\" height=\"14\" fill=\"{colour}\"/></svg> {key}</span>"
        );
    }
    if points.is_empty() {
        svg.push_str("<span>no samples yet (one is taken every minute)</span>");
    }
    svg.push_str("</figcaption></figure>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_chart_draws_one_line_per_state_within_the_hour() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let samples = vec![
            json!({"at": "2026-11-27T10:00:00Z", "pending": 999, "running": 0, "retrying": 0, "dead": 0}),
            json!({"at": "2026-11-27T11:30:00Z", "pending": 4, "running": 1, "retrying": 2, "dead": 3}),
            json!({"at": "2026-11-27T11:59:00Z", "pending": 8, "running": 0, "retrying": 0, "dead": 3}),
        ];
        let svg = chart(&samples, now);
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(
            svg.contains("highest value 8"),
            "the two-hour-old sample is not drawn"
        );
        assert!(chart(&[], now).contains("no samples yet"));
    }
}
