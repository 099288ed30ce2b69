//! Runs every `curl` line of the README's demo block against a spawned service and checks
//! the status written after it (`# 201`), so the README cannot drift from the service.

mod common;

use common::{ADMIN_TOKEN, API_TOKEN, Backend, Harness, SECRET};
use steadfast_payments::signature::Signer;

/// The text between single quotes after `flag`, or between double quotes.
fn quoted_after<'a>(line: &'a str, flag: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(flag) {
        rest = &rest[at + flag.len()..];
        let quote = rest.chars().next().unwrap();
        let end = rest[1..].find(quote).unwrap();
        out.push(&rest[1..=end]);
        rest = &rest[end + 2..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_curls_answer_what_the_readme_says() {
    let readme = include_str!("../README.md");
    let block = readme
        .split("```sh")
        .find(|b| b.contains("curl"))
        .and_then(|b| b.split("```").next())
        .unwrap();
    let Some(h) = Harness::start(Backend::Memory).await else {
        return;
    };
    let mut body_var = String::new();
    let mut ran = 0;
    for line in block.lines().map(str::trim) {
        if let Some(b) = line.strip_prefix("BODY='") {
            body_var = b.trim_end_matches('\'').to_owned();
            continue;
        }
        if !line.starts_with("curl") {
            continue;
        }
        let (command, expected) = line.rsplit_once("# ").unwrap();
        let expected: u16 = expected.trim().parse().unwrap();
        let url = command
            .split_whitespace()
            .find(|w| w.starts_with("localhost:8081"))
            .unwrap();
        let path = url.trim_start_matches("localhost:8081");
        let data = quoted_after(command, "-d ").first().map(|d| {
            if *d == "$BODY" {
                body_var.clone()
            } else {
                (*d).to_owned()
            }
        });
        let method = if command.contains("-X POST") {
            "POST"
        } else {
            "GET"
        };
        let mut req = h
            .http
            .request(method.parse().unwrap(), format!("{}{path}", h.base));
        for header in quoted_after(command, "-H ") {
            let (name, value) = header.split_once(": ").unwrap();
            let value = value
                .replace("$ADMIN_TOKEN", ADMIN_TOKEN)
                .replace("$API_TOKEN", API_TOKEN);
            let value = if value == "$SIG" {
                Signer::new(SECRET.as_bytes()).sign(body_var.as_bytes())
            } else {
                value
            };
            req = req.header(name, value);
        }
        if let Some(d) = data {
            req = req.body(d);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), expected, "{command}");
        ran += 1;
        if path == "/momo/callback" {
            common::eventually("deposit credited", async || {
                h.balance("acc_a").await.0 == 5000
            })
            .await;
        }
    }
    assert_eq!(ran, 8);
    assert_eq!(h.balance("acc_b").await, (1200, 1200));
    h.finish().await;
}
