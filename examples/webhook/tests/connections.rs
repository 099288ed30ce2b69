//! Connection limits over real sockets: the header-read timeout, the keep-alive idle timeout,
//! the head size limit, the connection cap, and the separate ops listener.
//!
//! Timeouts are set short (a few hundred milliseconds) and a close is asserted to come within
//! a small multiple of them; [`BOUND`] only fails a hung test.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use steadfast_webhook::assemble::App;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A generous bound on anything over a real socket: it fails a hung test, it does not time it.
const BOUND: Duration = Duration::from_secs(10);

/// A served app (worker off) on loopback ports: the public address, the ops address when
/// `split`, and the stop signal.
async fn serve(extra: &str, split: bool) -> (SocketAddr, Option<SocketAddr>, oneshot::Sender<()>) {
    let app = App::build(memory_config(&format!(
        "[worker]\nenabled = false\n{extra}"
    )))
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ops = if split {
        Some(TcpListener::bind("127.0.0.1:0").await.unwrap())
    } else {
        None
    };
    let ops_addr = ops.as_ref().map(|l| l.local_addr().unwrap());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(app.serve_split(listener, ops, async {
        let _ = stop_rx.await;
    }));
    (addr, ops_addr, stop_tx)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n")
}

/// Reads one answer on a kept-alive connection: (status, body). Panics when the connection
/// closes first or nothing comes within [`BOUND`].
async fn response(c: &mut TcpStream) -> (u16, Vec<u8>) {
    tokio::time::timeout(BOUND, try_response(c))
        .await
        .expect("answered within the bound")
        .expect("answered, not closed")
}

async fn try_response(c: &mut TcpStream) -> Option<(u16, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match c.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while raw.len() < head_end + length {
        match c.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    Some((status, raw[head_end..head_end + length].to_vec()))
}

/// Waits until the server closes `c`, reading (and returning) whatever it sends first.
async fn closed(c: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    tokio::time::timeout(BOUND, async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closed the connection");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_head_is_cut_off_at_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let (addr, _, stop) = serve(
        "[http]\nheader_read_timeout_ms = 300\nkeep_alive_timeout_ms = 60000",
        false,
    )
    .await;
    // Several slowloris clients at once, each sending one header byte every 50 ms, forever.
    let mut clients = Vec::new();
    for _ in 0..5 {
        let c = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = c.into_split();
        let started = Instant::now();
        let trickle = tokio::spawn(async move {
            let head = b"GET /health HTTP/1.1\r\nhost: test\r\nx-slow: ";
            for byte in head.iter().chain(std::iter::repeat(&b'a')).take(1000) {
                if wr.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        clients.push(tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            // No answer to an unfinished head: only the close.
            let got = tokio::time::timeout(BOUND, rd.read(&mut buf)).await;
            trickle.abort();
            let read = got.expect("disconnected, not held");
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
            started.elapsed()
        }));
    }
    for c in clients {
        let held = c.await.unwrap();
        assert!(held < 4 * timeout, "held for {held:?}");
    }
    // The server still answers.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(get("/health").as_bytes()).await.unwrap();
    assert_eq!(response(&mut c).await.0, 200);
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let keep_alive = Duration::from_millis(300);
    let (addr, _, stop) = serve(
        "[http]\nheader_read_timeout_ms = 5000\nkeep_alive_timeout_ms = 300",
        false,
    )
    .await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(get("/health").as_bytes()).await.unwrap();
    assert_eq!(response(&mut c).await.0, 200);
    // Kept alive: a second request on the same connection within the timeout is served.
    tokio::time::sleep(keep_alive / 3).await;
    c.write_all(get("/health").as_bytes()).await.unwrap();
    assert_eq!(response(&mut c).await.0, 200);
    // Then idle: closed, without an answer, within a few times the timeout.
    let idle_from = Instant::now();
    assert!(closed(&mut c).await.is_empty());
    let held = idle_from.elapsed();
    assert!(held < 4 * keep_alive, "held for {held:?}");
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_not_cut_by_the_shorter_header_timeout() {
    // hyper's own header timer starts when a kept-alive connection goes idle; the server's
    // does not, so idling between requests is governed by the keep-alive timeout alone.
    let header = Duration::from_millis(200);
    let (addr, _, stop) = serve(
        "[http]\nheader_read_timeout_ms = 200\nkeep_alive_timeout_ms = 5000",
        false,
    )
    .await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(get("/health").as_bytes()).await.unwrap();
    assert_eq!(response(&mut c).await.0, 200);
    tokio::time::sleep(3 * header).await;
    c.write_all(get("/health").as_bytes()).await.unwrap();
    assert_eq!(response(&mut c).await.0, 200);
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_kib_head_is_431_or_closed_at_once() {
    // Timeouts far away: whatever happens comes from the size limit.
    let (addr, _, stop) = serve(
        "[http]\nheader_read_timeout_ms = 60000\nkeep_alive_timeout_ms = 60000",
        false,
    )
    .await;
    let padding: String = (0..64)
        .map(|i| format!("x-pad-{i:02}: {}\r\n", "a".repeat(1012)))
        .collect();
    assert!(padding.len() >= 64 * 1024);
    for finished in [false, true] {
        let head = format!(
            "GET /health HTTP/1.1\r\nhost: test\r\n{padding}{}",
            if finished { "\r\n" } else { "" }
        );
        let mut c = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let (mut rd, mut wr) = c.split();
        // The server may answer and close before it has read everything: write alongside.
        let (_, raw) = tokio::join!(
            async {
                let _ = wr.write_all(head.as_bytes()).await;
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
                .expect("answered and closed, not held");
                out
            }
        );
        let answered = String::from_utf8_lossy(&raw);
        assert!(
            raw.is_empty() || answered.starts_with("HTTP/1.1 431"),
            "finished {finished}: {answered}"
        );
        // "At once": well before any timeout, only the time to send 64 KiB over loopback.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_connections_a_connection_waits_until_a_slot_frees() {
    let (addr, _, stop) = serve(
        "[http]\nmax_connections = 2\nheader_read_timeout_ms = 5000\nkeep_alive_timeout_ms = 5000",
        false,
    )
    .await;
    // Two kept-alive connections, each served once: they hold both slots.
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(get("/health").as_bytes()).await.unwrap();
    assert_eq!(response(&mut first).await.0, 200);
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(get("/health").as_bytes()).await.unwrap();
    assert_eq!(response(&mut second).await.0, 200);
    // A third connects (the kernel completes the handshake) but is not served.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(get("/health").as_bytes()).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), try_response(&mut third))
            .await
            .is_err(),
        "not served while two connections are open"
    );
    // The first two still are.
    second.write_all(get("/health").as_bytes()).await.unwrap();
    assert_eq!(response(&mut second).await.0, 200);
    // One closes: the third is accepted and answered.
    drop(first);
    assert_eq!(response(&mut third).await.0, 200);
    stop.send(()).unwrap();
}

async fn status(client: &reqwest::Client, url: String, admin: bool) -> u16 {
    let mut req = client.get(url);
    if admin {
        req = req.bearer_auth(ADMIN_TOKEN);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ops_listen_metrics_and_admin_are_on_the_ops_port_only() {
    let (public, ops, stop) = serve("", true).await;
    let ops = ops.unwrap();
    let client = reqwest::Client::new();
    // Public: the webhook and /health; /metrics and /admin are not there.
    let body = fixture("text_message.json");
    let res = client
        .post(format!("http://{public}/webhook"))
        .header("x-hub-signature-256", sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The peer address reaches the rate limiter.
    assert_eq!(res.headers()["x-ratelimit-remaining"], "299");
    assert_eq!(
        status(&client, format!("http://{public}/health"), false).await,
        200
    );
    assert_eq!(
        status(&client, format!("http://{public}/metrics"), false).await,
        404
    );
    for path in ["/admin/breakers", "/admin/registry", "/admin/dlq"] {
        assert_eq!(
            status(&client, format!("http://{public}{path}"), true).await,
            404,
            "{path}"
        );
    }
    // Ops: /health, /metrics and /admin; not the webhook.
    assert_eq!(
        status(&client, format!("http://{ops}/health"), false).await,
        200
    );
    let metrics = client
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("webhook_"));
    for path in ["/admin/breakers", "/admin/registry", "/admin/dlq"] {
        assert_eq!(
            status(&client, format!("http://{ops}{path}"), true).await,
            200,
            "{path}"
        );
        assert_eq!(
            status(&client, format!("http://{ops}{path}"), false).await,
            401,
            "{path}"
        );
    }
    assert_eq!(
        status(&client, format!("http://{ops}/webhook"), false).await,
        404
    );
    // Both stop with the one signal.
    stop.send(()).unwrap();
    tokio::time::timeout(BOUND, async {
        while TcpStream::connect(ops).await.is_ok() || TcpStream::connect(public).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both listeners closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ops_listen_everything_is_on_the_one_port() {
    let (public, _, stop) = serve("", false).await;
    let client = reqwest::Client::new();
    assert_eq!(
        status(&client, format!("http://{public}/metrics"), false).await,
        200
    );
    assert_eq!(
        status(&client, format!("http://{public}/admin/breakers"), true).await,
        200
    );
    assert_eq!(
        status(&client, format!("http://{public}/health"), false).await,
        200
    );
    stop.send(()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_and_half_sent_connections_and_returns() {
    let app = App::build(memory_config(
        "[worker]\nenabled = false\n[http]\nshutdown_grace_ms = 5000\nheader_read_timeout_ms = 300\nkeep_alive_timeout_ms = 60000",
    ))
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stop_rx.await;
    }));
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(get("/health").as_bytes()).await.unwrap();
    assert_eq!(response(&mut idle).await.0, 200);
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nhost: te")
        .await
        .unwrap();
    stop_tx.send(()).unwrap();
    // The idle one closes at once; the half-sent head at its header timeout at the latest;
    // serve returns well within the grace.
    assert!(closed(&mut idle).await.is_empty());
    closed(&mut half).await;
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("serve returns before the grace")
        .unwrap()
        .unwrap();
}
