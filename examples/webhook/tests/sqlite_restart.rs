//! The binary on its SQLite default, as a user runs it: accepted messages survive a `kill -9`
//! and are delivered once after the restart; a second instance on the same file refuses to
//! start, naming the file.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::fakes::start_downstream;
use common::*;
use steadfast_testkit::SqliteFile;

/// A free loopback port (bound, read, released: the service binds it right after).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A config file next to the database: the SQLite backend is the default (nothing names it),
/// only the path is set so that the test owns the file.
fn write_config(dir: &Path, db: &Path, port: u16, downstream: &str) -> std::path::PathBuf {
    write_config_with(dir, db, port, downstream, "")
}

/// As [`write_config`], with `worker` lines added to `[worker]`.
fn write_config_with(
    dir: &Path,
    db: &Path,
    port: u16,
    downstream: &str,
    worker: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("webhook-{port}.toml"));
    let text = format!(
        r#"listen = "127.0.0.1:{port}"
[whatsapp]
app_secret = "{SECRET}"
verify_token = "{VERIFY_TOKEN}"
[admin]
token = "{ADMIN_TOKEN}"
[storage]
sqlite_path = "{db}"
[worker]
poll_interval_ms = 20
{worker}
[[services]]
name = "jobs"
endpoints = ["{downstream}/jobs"]
[routing]
default_service = "jobs"
"#,
        db = db.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The binary with a clean environment: an exported `DATABASE_URL` (as the test run has)
/// would select Postgres.
fn webhook(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steadfast-webhook"));
    cmd.env_clear()
        .env("RUST_LOG", "warn")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn healthy(port: u16) {
    let url = format!("http://127.0.0.1:{port}/health");
    eventually("the service answers /health", async || {
        reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn accepted_messages_survive_kill_9_and_a_second_instance_is_refused() {
    let file = SqliteFile::new();
    let dir = tempdir_for(&file);
    let (down_url, downstream) = start_downstream().await;
    let first_port = free_port();
    let first_config = write_config(&dir, file.path(), first_port, &down_url);

    // First run: ingestion only, so every message is still queued when it is killed.
    let mut first = Running(
        webhook(&first_config, &["--no-worker"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    healthy(first_port).await;
    let body = text_batch("RESTART", 50, "jobs please");
    let res = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{first_port}/webhook"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(&body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let accepted: serde_json::Value = res.json().await.unwrap();
    assert_eq!(accepted["accepted"], 50, "{accepted}");

    // A second instance on the same file is refused at start-up, naming the file.
    let second_config = write_config(&dir, file.path(), free_port(), &down_url);
    let second = webhook(&second_config, &[]).output().unwrap();
    assert!(
        !second.status.success(),
        "the second instance must not start"
    );
    let message = stderr(&second);
    assert!(
        message.contains(&file.path().display().to_string()) && message.contains("in use"),
        "the refusal names the file: {message}"
    );

    // kill -9: no shutdown, nothing flushed beyond what each 200 already committed.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    drop(first);
    assert_eq!(downstream.total_delivered(), 0);

    // Restarted with its worker on the same file: every message, once.
    let third_port = free_port();
    let third_config = write_config(&dir, file.path(), third_port, &down_url);
    let _third = Running(
        webhook(&third_config, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    healthy(third_port).await;
    eventually("all 50 messages delivered after the restart", async || {
        downstream.total_delivered() >= 50
    })
    .await;
    for i in 0..50 {
        assert_eq!(
            downstream.delivered(&format!("wamid.RESTART.{i}")),
            1,
            "message {i}"
        );
    }
    // The same delivery sent again after the restart is a duplicate (the queue's durable key).
    let res = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{third_port}/webhook"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    let again: serde_json::Value = res.json().await.unwrap();
    assert_eq!(again["duplicates"], 50, "{again}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A folder of this test's own for the config files (named after the database file).
fn tempdir_for(file: &SqliteFile) -> std::path::PathBuf {
    let mut dir = file.path().as_os_str().to_owned();
    dir.push(".d");
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Killed while its worker is in the middle of delivering (the downstream holds every call):
/// after the restart the messages whose calls died with the process are delivered once, when
/// their leases (1 s in the killed process) run out.
#[tokio::test]
async fn messages_in_flight_at_kill_9_are_delivered_once_after_restart() {
    use std::sync::atomic::Ordering;
    let file = SqliteFile::new();
    let dir = tempdir_for(&file);
    let (down_url, downstream) = start_downstream().await;
    downstream.delay_ms.store(60_000, Ordering::SeqCst);
    let port = free_port();
    let config = write_config_with(&dir, file.path(), port, &down_url, "lease_seconds = 1");
    let mut first = Running(
        webhook(&config, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    healthy(port).await;
    let body = text_batch("INFLIGHT", 20, "jobs please");
    let res = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhook"))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    eventually("the worker is calling the downstream", async || {
        !downstream.requests.lock().is_empty()
    })
    .await;
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    drop(first);
    // The calls in flight died with the process (their connections closed): none completed.
    assert_eq!(downstream.total_delivered(), 0);
    // The restarted process talks to a downstream of its own: the first one keeps holding
    // every call, so a request of the dead process that its handler only picks up now (a
    // busy machine) cannot be counted as a delivery.
    let (down_url, downstream) = start_downstream().await;

    let port = free_port();
    // The dead process's claims carry its 1 s leases, so they lapse at once; the restarted
    // one claims with a long lease, so that a slow delivery on a busy machine is never taken
    // for a dead one (which would deliver it twice, as at-least-once allows).
    let config = write_config_with(&dir, file.path(), port, &down_url, "lease_seconds = 30");
    let _second = Running(
        webhook(&config, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    healthy(port).await;
    eventually("all 20 messages delivered after the restart", async || {
        downstream.total_delivered() >= 20
    })
    .await;
    for i in 0..20 {
        assert_eq!(
            downstream.delivered(&format!("wamid.INFLIGHT.{i}")),
            1,
            "message {i}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
