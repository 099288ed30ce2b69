//! The served binary path: real TCP, client IPs from the connection, graceful shutdown.

mod common;

use std::time::Duration;

use common::*;
use steadfast_webhook::assemble::App;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_over_tcp_and_shuts_down_gracefully() {
    let app = App::build(memory_config("[http]\nshutdown_grace_ms = 2000"))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stop_rx.await;
    }));

    let client = reqwest::Client::new();
    let body = fixture("text_message.json");
    let res = client
        .post(format!("http://{addr}/webhook"))
        .header("x-hub-signature-256", sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The limiter keys on the connection's IP (127.0.0.1) and reports it.
    assert_eq!(res.headers()["x-ratelimit-limit"], "300");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "299");
    let health = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    stop_tx.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns after the signal")
        .unwrap();
    assert!(result.is_ok());
    assert!(
        client
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
}
