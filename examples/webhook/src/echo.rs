//! The demo's built-in downstream: answers every service with an echo of the message, so the
//! whole path (queue, conversation, routing, registry, reply) runs with nothing else installed.

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

async fn answer(Path(service): Path<String>, Json(body): Json<Value>) -> Json<Value> {
    let text = body
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("(no text)");
    let state = body
        .get("conversation_state")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let remembered = body
        .get("history")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Json(json!({
        "reply": format!("[{service}] you said: {text} (conversation: {state}, {remembered} messages remembered)"),
        "done": false,
    }))
}

/// Starts the echo downstream on a free loopback port; returns its base URL
/// (`http://127.0.0.1:PORT`). Each service is at `<base>/<service name>`.
pub async fn start() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/{service}", post(answer));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}
