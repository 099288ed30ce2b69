use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn err(text: &str, e: &HashMap<String, String>) -> String {
    Config::from_toml(text, e, &Overrides::default())
        .expect_err("should be refused")
        .to_string()
}

const PROD: &[(&str, &str)] = &[
    ("DATABASE_URL", "postgres://postgres@127.0.0.1/test"),
    ("PAYMENTS_API_TOKEN", "api-token-0123456789"),
    ("ADMIN_TOKEN", "admin-token-0123456789"),
    ("MOMO_CALLBACK_SECRET", "callback-secret-0123456789"),
    ("MOMO_API_KEY", "momo-key"),
];

#[test]
fn nothing_configured_is_sqlite_with_generated_secrets_and_loopback() {
    let c = Config::from_toml("", &HashMap::new(), &Overrides::default()).unwrap();
    assert!(!c.is_demo(), "nothing configured is durable now");
    assert_eq!(c.storage.backend, Backend::Sqlite);
    assert_eq!(
        c.storage.sqlite_path,
        std::path::PathBuf::from(DEFAULT_SQLITE_PATH)
    );
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    let keys: Vec<_> = c.generated.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "api.token",
            "admin.token",
            "momo.callback_secret",
            "momo.api_key"
        ]
    );
    assert!(c.momo.allows("127.0.0.1".parse().unwrap()));
    assert!(c.momo.allows("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!c.momo.allows("10.0.0.1".parse().unwrap()));
    assert_eq!(c.rate_limit.per_minute, DEFAULT_RATE_PER_MINUTE);
    assert!(c.momo.api_url.is_none());
}

#[test]
fn the_issue_example_file_loads_with_env_overrides() {
    let text = r#"
listen = "127.0.0.1:9000"
[api]
token = "file-api-token-0123456789"
[admin]
token = "file-admin-token-0123456789"
[momo]
callback_secret = "file-callback-secret-0123"
allowed_ips = ["196.223.0.0/16", "10.1.2.3"]
api_url = "https://momo.example/"
api_key = "k"
[rate_limit]
per_minute = 100
[storage]
database_url = "postgres://db/payments"
"#;
    let c = Config::from_toml(
        text,
        &env(&[
            ("LISTEN_ADDR", "127.0.0.1:9001"),
            ("MOMO_API_KEY", "env-key"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9001");
    assert_eq!(c.momo.api_key.expose(), "env-key");
    assert_eq!(c.momo.api_url.as_deref(), Some("https://momo.example"));
    assert!(c.momo.allows("196.223.4.5".parse().unwrap()));
    assert!(c.momo.allows("10.1.2.3".parse().unwrap()));
    assert!(!c.momo.allows("10.1.2.4".parse().unwrap()));
    assert!(c.generated.is_empty());
    let flag = Overrides {
        listen: Some("127.0.0.1:9002".into()),
        ..Overrides::default()
    };
    assert_eq!(
        Config::from_toml(text, &HashMap::new(), &flag)
            .unwrap()
            .listen
            .to_string(),
        "127.0.0.1:9002"
    );
}

#[test]
fn unknown_keys_and_bad_values_name_their_key() {
    assert!(err("[momo]\nallowed_ip = []", &HashMap::new()).contains("allowed_ip"));
    assert!(err("colour = 1", &HashMap::new()).contains("colour"));
    assert!(err("listen = \"nowhere\"", &HashMap::new()).contains("`listen`"));
    assert!(
        err(
            "[momo]\nallowed_ips = [\"10.0.0.0/8\", \"bad\"]",
            &HashMap::new()
        )
        .contains("momo.allowed_ips[1]")
    );
    assert!(err("[momo]\napi_url = \"ftp://x\"", &HashMap::new()).contains("momo.api_url"));
    assert!(err("[api]\ntoken = \"short\"", &HashMap::new()).contains("api.token"));
    assert!(
        err("[rate_limit]\nper_minute = 5\nburst = 0", &HashMap::new())
            .contains("rate_limit.burst")
    );
    assert!(
        err("[storage]\ndatabase_url = \"mysql://x\"", &HashMap::new())
            .contains("storage.database_url")
    );
}

#[test]
fn production_requires_allowed_ips_and_api_url() {
    let e = err("", &env(PROD));
    assert!(e.contains("momo.allowed_ips"), "{e}");
    let e = err("[momo]\nallowed_ips = [\"10.0.0.0/8\"]", &env(PROD));
    assert!(e.contains("momo.api_url"), "{e}");
    let mut missing = env(PROD);
    missing.remove("PAYMENTS_API_TOKEN");
    let e = err(
        "[momo]\nallowed_ips = [\"10.0.0.0/8\"]\napi_url = \"https://m\"",
        &missing,
    );
    assert!(e.contains("api.token"), "{e}");
}

#[test]
fn memory_is_explicit_and_contradictions_name_the_key() {
    let demo = Overrides {
        demo: true,
        ..Overrides::default()
    };
    let c = Config::from_toml("", &HashMap::new(), &demo).unwrap();
    assert!(c.is_demo());
    let c = Config::from_toml(
        "[storage]\nbackend = \"memory\"",
        &HashMap::new(),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.storage.backend, Backend::Memory);
    let err = |text: &str, e: &HashMap<String, String>| {
        Config::from_toml(text, e, &Overrides::default())
            .unwrap_err()
            .to_string()
    };
    let e = err("[storage]\nbackend = \"postgres\"", &HashMap::new());
    assert!(
        e.contains("storage.backend") && e.contains("database_url"),
        "{e}"
    );
    let pg = HashMap::from([("DATABASE_URL".to_owned(), "postgres://db/p".to_owned())]);
    let e = err("[storage]\nbackend = \"sqlite\"", &pg);
    assert!(e.contains("storage.backend"), "{e}");
    let redis = HashMap::from([("REDIS_URL".to_owned(), "redis://r".to_owned())]);
    let e = err("", &redis);
    assert!(e.contains("storage.redis_url"), "{e}");
}
