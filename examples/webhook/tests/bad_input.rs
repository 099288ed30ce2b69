//! Hostile and broken input on `POST /webhook`: truncated bodies, huge headers, wrong content
//! types, deeply nested JSON, a big batch with one malformed item, invalid UTF-8, slow bodies.
//!
//! Every case checks the status, the body's shape where there is one, and the queue's exact
//! contents: nothing lost, nothing extra. The worker is off, so every stored message stays
//! `pending` where the test can list it.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use common::*;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use steadfast_dlq::{Filter, Page, State};
use steadfast_webhook::assemble::App;
use steadfast_webhook::config::{Config, Overrides};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A generous bound on anything over a real socket: it fails a hung test, it does not time it.
const BOUND: Duration = Duration::from_secs(10);

async fn app(extra: &str) -> App {
    App::build(memory_config(&format!(
        "[worker]\nenabled = false\n{extra}"
    )))
    .await
    .unwrap()
}

type Queue = std::sync::Arc<dyn steadfast_dlq::Queue>;

/// The dedup keys (`wamid`s) of every stored message; asserts that nothing else is stored.
async fn queued(app: &App) -> BTreeSet<String> {
    queued_in(app.state().ingestor.queue()).await
}

async fn queued_in(queue: &Queue) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut after = None;
    loop {
        let page = queue
            .list(
                &Filter::in_state(State::Pending),
                Page { limit: 1000, after },
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for m in &page {
            assert!(
                ids.insert(m.dedup_key.clone().expect("every message has its wamid")),
                "stored twice: {:?}",
                m.dedup_key
            );
        }
    }
    let total: u64 = queue
        .stats()
        .await
        .unwrap()
        .iter()
        .map(|s| State::ALL.iter().map(|st| s.count(*st)).sum::<u64>())
        .sum();
    assert_eq!(total, ids.len() as u64, "only pending messages are stored");
    ids
}

fn set<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> BTreeSet<String> {
    ids.into_iter().map(Into::into).collect()
}

/// Asserts a problem+json answer with `status`; returns its body.
fn problem(s: StatusCode, h: &http::HeaderMap, b: &[u8], status: StatusCode) -> Value {
    assert_eq!(s, status, "{}", String::from_utf8_lossy(b));
    assert_eq!(h["content-type"], "application/problem+json");
    let p = json(b);
    assert_eq!(p["status"], status.as_u16());
    assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
    p
}

/// The counts of a 200 answer: (accepted, duplicates, malformed).
fn counts(s: StatusCode, b: &[u8]) -> (u64, u64, u64) {
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(b));
    let r = json(b);
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    (n("accepted"), n("duplicates"), n("malformed"))
}

async fn health(r: &Router) -> StatusCode {
    send(r, Request::get("/health").body(Body::empty()).unwrap())
        .await
        .0
}

#[tokio::test]
async fn truncated_bodies_are_400_and_store_nothing() {
    let app = app("").await;
    let r = app.router();
    let full = text_batch("TRUNC", 3, "hello");
    for cut in [1, 10, full.len() / 3, full.len() / 2, full.len() - 1] {
        // Signed as sent: the signature holds, the JSON does not.
        let part = &full[..cut];
        let (s, h, b) = send(&r, signed(part)).await;
        let p = problem(s, &h, &b, StatusCode::BAD_REQUEST);
        assert!(
            p["detail"].as_str().unwrap().contains("not valid JSON"),
            "{p}"
        );
        // Cut in transit: the signature of the whole body no longer matches.
        let (s, h, b) = send(&r, post_webhook(part, Some(&sign(&full)))).await;
        problem(s, &h, &b, StatusCode::FORBIDDEN);
    }
    let (s, h, b) = send(&r, signed(b"")).await;
    problem(s, &h, &b, StatusCode::BAD_REQUEST);
    assert!(queued(&app).await.is_empty());

    // The whole delivery, retried by Meta, is then stored in full.
    let (s, _, b) = send(&r, signed(&full)).await;
    assert_eq!(counts(s, &b), (3, 0, 0));
    assert_eq!(
        queued(&app).await,
        set((0..3).map(|i| format!("wamid.TRUNC.{i}")))
    );
    app.shutdown().await;
}

#[tokio::test]
async fn huge_headers_are_431_in_process() {
    let app = app("").await;
    let r = app.router();
    let body = text_batch("HDR", 1, "hello");
    for (name, size) in [("x-padding", 100 * 1024), ("x-request-id", 20 * 1024)] {
        let mut req = signed(&body);
        req.headers_mut()
            .insert(name, "a".repeat(size).parse().unwrap());
        let (s, h, b) = send(&r, req).await;
        problem(s, &h, &b, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        // The answer still carries a (fresh, sane) correlation id.
        assert!(h["x-request-id"].len() <= 128);
    }
    // Many small headers adding up over the limit: the same.
    let mut req = signed(&body);
    for i in 0..90 {
        req.headers_mut().insert(
            http::HeaderName::try_from(format!("x-pad-{i}")).unwrap(),
            "b".repeat(200).parse().unwrap(),
        );
    }
    let (s, h, b) = send(&r, req).await;
    problem(s, &h, &b, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(queued(&app).await.is_empty());
    // A normal-sized request next to them is fine.
    let mut req = signed(&body);
    req.headers_mut()
        .insert("x-padding", "a".repeat(4 * 1024).parse().unwrap());
    let (s, _, b) = send(&r, req).await;
    assert_eq!(counts(s, &b), (1, 0, 0));
    assert_eq!(queued(&app).await, set(["wamid.HDR.0"]));
    app.shutdown().await;
}

#[tokio::test]
async fn content_type_is_not_checked_the_signature_over_the_raw_bytes_is() {
    // Meta always sends `application/json`. The service never looks at Content-Type: the
    // signature over the raw bytes decides, then the bytes must be a JSON delivery. Refusing
    // a correctly signed delivery over a header would only make Meta retry it for a week.
    let app = app("").await;
    let r = app.router();
    let mut expected = BTreeSet::new();
    for (i, ct) in [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let body = text_batch(&format!("CT{i}"), 1, "hello");
        let mut req = Request::post("/webhook").header("x-hub-signature-256", sign(&body));
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let (s, _, b) = send(&r, req.body(Body::from(body)).unwrap()).await;
        assert_eq!(counts(s, &b), (1, 0, 0), "{ct:?}");
        expected.insert(format!("wamid.CT{i}.0"));
    }
    // A real form body, correctly signed: not JSON, 400.
    let form = b"object=whatsapp_business_account&entry=%5B%5D";
    let req = Request::post("/webhook")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-hub-signature-256", sign(form))
        .body(Body::from(&form[..]))
        .unwrap();
    let (s, h, b) = send(&r, req).await;
    problem(s, &h, &b, StatusCode::BAD_REQUEST);
    // A JSON body signed as if it were something else: the bytes differ, 403.
    let body = text_batch("CTX", 1, "hello");
    let reencoded = serde_json::to_vec_pretty(&json(&body)).unwrap();
    let (s, h, b) = send(&r, post_webhook(&reencoded, Some(&sign(&body)))).await;
    problem(s, &h, &b, StatusCode::FORBIDDEN);
    assert_eq!(queued(&app).await, expected);
    app.shutdown().await;
}

fn nested(depth: usize, open: &str, close: &str) -> String {
    format!("{}{}", open.repeat(depth), close.repeat(depth))
}

#[tokio::test]
async fn deeply_nested_json_is_400_and_the_service_keeps_answering() {
    let app = app("").await;
    let r = app.router();
    let depth = 100_000;
    let envelope = |inner: &str| {
        format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messages":[{{"id":"wamid.DEEP.0","from":"250788000001","type":"text","text":{{"body":"hi"}},"extra":{inner}}}]}}}}]}}]}}"#
        )
    };
    let bodies = [
        envelope(&nested(depth, "[", "]")),
        envelope(&nested(depth, r#"{"a":"#, "}")),
        nested(depth, "[", "]"),
        format!(r#"{{"object":{}}}"#, nested(depth, "[", "]")),
    ];
    for body in &bodies {
        assert!(body.len() < 4 * 1024 * 1024, "under the body limit");
        let (s, h, b) = send(&r, signed(body.as_bytes())).await;
        let p = problem(s, &h, &b, StatusCode::BAD_REQUEST);
        assert!(
            p["detail"].as_str().unwrap().contains("recursion limit"),
            "{p}"
        );
    }
    // Still alive and answering.
    assert_eq!(health(&r).await, StatusCode::OK);
    let ok = envelope("[[1]]");
    let (s, _, b) = send(&r, signed(ok.as_bytes())).await;
    assert_eq!(counts(s, &b), (1, 0, 0));
    assert_eq!(queued(&app).await, set(["wamid.DEEP.0"]));
    app.shutdown().await;
}

/// A 1000-message delivery whose message at `bad` is replaced by `malformed`.
fn batch_with_one_bad(prefix: &str, bad: usize, malformed: Value) -> Vec<u8> {
    let mut v = json(&text_batch(prefix, 1000, "hello"));
    v["entry"][0]["changes"][0]["value"]["messages"][bad] = malformed;
    serde_json::to_vec(&v).unwrap()
}

/// The documented choice: the good messages are kept, the malformed one is counted as
/// `malformed` and skipped (Meta would resend the same bad item for a week and hold the good
/// ones back if the delivery were refused).
async fn one_malformed_item_in_a_1000_batch(app: &App) {
    let r = app.router();
    let bad = 500;
    let cases = [
        (
            "NOID",
            json!({"from": "250788000001", "type": "text", "text": {"body": "x"}}),
        ),
        ("NOFROM", json!({"id": "wamid.NOFROM.bad", "type": "text"})),
        (
            "IDOBJ",
            json!({"id": {"nested": 1}, "from": "250788000001"}),
        ),
        ("EMPTYID", json!({"id": "", "from": "250788000001"})),
        ("NUMBER", json!(42)),
        ("NULL", Value::Null),
        // The queue refuses a dedup key over 255 bytes: skipped at ingestion, same count.
        (
            "LONGID",
            json!({"id": "w".repeat(300), "from": "250788000001", "type": "text"}),
        ),
        // The queue would take it but the processed markers would not: one rule refuses it
        // at ingestion, so it is never queued without its marker (processed twice later).
        (
            "NONASCII",
            json!({"id": "wamid.NONASCII.é", "from": "250788000001", "type": "text"}),
        ),
    ];
    let mut expected = queued(app).await;
    for (prefix, malformed) in cases {
        let body = batch_with_one_bad(prefix, bad, malformed);
        let (s, _, b) = send(&r, signed(&body)).await;
        assert_eq!(counts(s, &b), (999, 0, 1), "{prefix}");
        expected.extend(
            (0..1000)
                .filter(|i| *i != bad)
                .map(|i| format!("wamid.{prefix}.{i}")),
        );
        assert_eq!(
            queued(app).await,
            expected,
            "{prefix}: exactly the 999 good ones"
        );
        // Meta's redelivery of the same batch: all duplicates, nothing new.
        let (s, _, b) = send(&r, signed(&body)).await;
        assert_eq!(counts(s, &b), (0, 999, 1), "{prefix}");
        assert_eq!(queued(app).await, expected);
    }
}

#[tokio::test]
async fn one_malformed_item_in_a_1000_batch_keeps_the_999_memory() {
    let app = app("").await;
    one_malformed_item_in_a_1000_batch(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_malformed_item_in_a_1000_batch_keeps_the_999_postgres() {
    let Some(pg) = steadfast_testkit::postgres().await else {
        return;
    };
    let toml = format!(
        "[whatsapp]\napp_secret = \"{SECRET}\"\nverify_token = \"{VERIFY_TOKEN}\"\n\
         [storage]\ndatabase_url = \"{}\"\n[worker]\nenabled = false\n\
         [[services]]\nname = \"ai-agent\"\nendpoints = [\"http://127.0.0.1:9/unused\"]\n\
         [routing]\ndefault_service = \"ai-agent\"\n",
        steadfast_testkit::database_url()
    );
    let config = Config::from_toml(&toml, &Default::default(), &Overrides::default()).unwrap();
    let app = App::build_with_pool(config, Some(pg.pool().clone()))
        .await
        .unwrap();
    one_malformed_item_in_a_1000_batch(&app).await;
    app.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_is_400_even_when_signed() {
    let app = app("").await;
    let r = app.router();
    let good = text_batch("UTF", 1, "PLACEHOLDER");
    let with = |bytes: &[u8]| {
        let at = good.windows(11).position(|w| w == b"PLACEHOLDER").unwrap();
        [&good[..at], bytes, &good[at + 11..]].concat()
    };
    let bodies: Vec<Vec<u8>> = vec![
        with(&[0xff, 0xfe]),                // never valid in UTF-8
        with(&[0xc0, 0xaf]),                // overlong '/'
        with(&[0xed, 0xa0, 0x80]),          // a UTF-16 surrogate encoded as UTF-8
        with(&[0xe2, 0x82]),                // truncated sequence
        with(br"\ud800"),                   // a lone surrogate escape
        vec![0xef, 0xbb, 0xbf, b'{', b'}'], // a BOM, then JSON
        vec![0xff; 64],
    ];
    for body in &bodies {
        let (s, h, b) = send(&r, signed(body)).await;
        problem(s, &h, &b, StatusCode::BAD_REQUEST);
    }
    assert!(queued(&app).await.is_empty());
    // Valid UTF-8 (raw and escaped) is stored.
    let (s, _, b) = send(&r, signed(&with("Muraho ☕ é".as_bytes()))).await;
    assert_eq!(counts(s, &b), (1, 0, 0));
    assert_eq!(queued(&app).await, set(["wamid.UTF.0"]));
    app.shutdown().await;
}

/// A served app on a loopback port: its address, its stop signal, its queue.
async fn serve(
    extra: &str,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    Queue,
) {
    let app = app(extra).await;
    let queue = app.state().ingestor.queue().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async {
        let _ = stop_rx.await;
    }));
    (addr, stop_tx, queue)
}

/// Reads what the server sends until it closes the connection (or resets it); `None` when it
/// keeps the connection open past [`BOUND`].
async fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let done = tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    done.ok().map(|()| out)
}

/// Splits a raw HTTP/1.1 answer into (status, lower-cased head, body).
fn parse_answer(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let text = String::from_utf8_lossy(raw);
    let end = text
        .find("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {text:?}"));
    let head = text[..end].to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head, raw[end + 4..].to_vec())
}

fn request_head(addr: std::net::SocketAddr, body: &[u8], extra: &str) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         x-hub-signature-256: {}\r\ncontent-length: {}\r\n{extra}\r\n",
        sign(body),
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_and_their_connections_are_freed() {
    let (addr, stop, queue) = serve("[http]\nrequest_timeout_ms = 300").await;
    // Several slowloris clients at once: headers and half the body, then nothing (the
    // sockets stay open from this side).
    let mut slow = Vec::new();
    for i in 0..5 {
        let body = text_batch(&format!("SLOW{i}"), 1, "hello");
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(request_head(addr, &body, "").as_bytes())
            .await
            .unwrap();
        c.write_all(&body[..body.len() / 2]).await.unwrap();
        slow.push(c);
    }
    for c in &mut slow {
        let raw = read_until_closed(c)
            .await
            .expect("the server answers and closes the connection");
        let (status, head, body) = parse_answer(&raw);
        assert_eq!(status, 408, "{head}");
        assert!(
            head.contains("content-type: application/problem+json"),
            "{head}"
        );
        assert_eq!(json(&body)["status"], 408);
    }
    // A complete request on a fresh connection is served as usual.
    let body = text_batch("FAST", 1, "hello");
    let mut c = TcpStream::connect(addr).await.unwrap();
    let head = request_head(addr, &body, "connection: close\r\n");
    c.write_all(&[head.as_bytes(), &body].concat())
        .await
        .unwrap();
    let (status, _, answer) = parse_answer(&read_until_closed(&mut c).await.unwrap());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(queued_in(&queue).await, set(["wamid.FAST.0"]));
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_over_tcp_are_431_never_5xx_or_a_hang() {
    let (addr, stop, queue) = serve("").await;
    let body = text_batch("TCPHDR", 1, "hello");
    let big = |n: usize| format!("x-padding: {}\r\n", "a".repeat(n));
    let many: String = (0..150).map(|i| format!("x-pad-{i}: b\r\n")).collect();
    for (what, extra) in [
        ("20 KiB header", big(20 * 1024)),
        ("100 KiB header (the server's head limit)", big(100 * 1024)),
        ("1 MiB header (the server's head limit)", big(1024 * 1024)),
        ("150 headers (hyper's own limit)", many),
    ] {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let head = request_head(addr, &body, &format!("{extra}connection: close\r\n"));
        let request = [head.as_bytes(), &body].concat();
        // The server may answer and close before it has read everything: write alongside.
        let (mut rd, mut wr) = c.split();
        let (_, raw) = tokio::join!(
            async {
                let _ = wr.write_all(&request).await;
            },
            async {
                let mut out = Vec::new();
                let mut buf = [0u8; 8192];
                tokio::time::timeout(BOUND, async {
                    loop {
                        match rd.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => out.extend_from_slice(&buf[..n]),
                        }
                    }
                })
                .await
                .expect("answered and closed, not hung");
                out
            }
        );
        let (status, head, answer) = parse_answer(&raw);
        assert_eq!(status, 431, "{what}: {head}");
        if what.starts_with("20 KiB") {
            // Under the server's head limit: the service's own check, a problem+json answer.
            assert!(
                head.contains("content-type: application/problem+json"),
                "{head}"
            );
            assert_eq!(json(&answer)["status"], 431);
        }
    }
    let mut c = TcpStream::connect(addr).await.unwrap();
    let head = request_head(addr, &body, "connection: close\r\n");
    c.write_all(&[head.as_bytes(), &body].concat())
        .await
        .unwrap();
    let (status, _, _) = parse_answer(&read_until_closed(&mut c).await.unwrap());
    assert_eq!(status, 200);
    assert_eq!(queued_in(&queue).await, set(["wamid.TCPHDR.0"]));
    stop.send(()).unwrap();
}
