//! The configuration's tests: defaults, precedence, and errors that name the key.

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load(toml: &str, e: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml(toml, &env(e), &Overrides::default())
}

#[test]
fn empty_config_is_sqlite_with_generated_secrets_and_seed_routes() {
    let c = load("", &[]).unwrap();
    assert!(!c.is_demo(), "nothing configured is durable now");
    assert_eq!(c.storage.backend, Backend::Sqlite);
    assert_eq!(
        c.storage.sqlite_path,
        std::path::PathBuf::from(DEFAULT_SQLITE_PATH)
    );
    let keys: Vec<_> = c.generated.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "whatsapp.app_secret",
            "whatsapp.verify_token",
            "admin.token"
        ]
    );
    assert_eq!(c.whatsapp.app_secret.expose(), c.generated[0].1);
    let names: Vec<_> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["jobs", "property", "mobility", "marketplace", "ai-agent"]
    );
    assert_eq!(c.default_service, "ai-agent");
    assert_eq!(c.echo_services.len(), 5);
    assert_eq!(c.rate_limit.per_minute, 300);
    assert_eq!(c.http.body_limit_bytes, 4 * 1024 * 1024);
    assert_eq!(c.worker.max_attempts, 3);
    assert_eq!(c.conversation.sweep_interval, Duration::from_secs(30));
    assert!(c.fallback_reply.is_some());
}

#[test]
fn the_issue_example_parses() {
    let toml = r#"
            listen = "127.0.0.1:8080"
            [whatsapp]
            app_secret = "s3cret-s3cret-s3cret"
            verify_token = "verify-token-0123"
            access_token = "at"
            graph_api_url = "https://graph.facebook.com/v21.0"
            [admin]
            token = "0123456789abcdef"
            [[services]]
            name = "jobs"
            endpoints = ["http://127.0.0.1:9001/handle"]
            keywords = ["job", "jobs"]
            breaker = "standard"
            [[services]]
            name = "ai-agent"
            endpoints = ["http://127.0.0.1:9002/handle"]
            breaker = { failure_rate_percent = 60.0, open_seconds = 120 }
            [routing]
            default_service = "ai-agent"
        "#;
    let c = load(toml, &[("DATABASE_URL", "postgres://localhost/x")]).unwrap();
    assert!(!c.is_demo());
    assert!(c.generated.is_empty());
    assert_eq!(c.services.len(), 2);
    assert_eq!(
        c.services[1].breaker,
        BreakerSpec::Custom(CustomBreaker {
            failure_rate_percent: 60.0,
            open_seconds: 120,
            window_size: 20,
            minimum_calls: 5
        })
    );
    assert_eq!(c.whatsapp.access_token.as_ref().unwrap().expose(), "at");
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let c = Config::from_toml(
        "listen = \"127.0.0.1:1\"\n[whatsapp]\napp_secret = \"file-secret-0123456789\"",
        &env(&[
            ("LISTEN_ADDR", "127.0.0.1:2"),
            ("WHATSAPP_APP_SECRET", "env-secret-0123456789"),
            ("RATE_LIMIT_PER_MINUTE", "10"),
        ]),
        &Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(c.listen.port(), 3);
    assert_eq!(c.whatsapp.app_secret.expose(), "env-secret-0123456789");
    assert_eq!(c.rate_limit.per_minute, 10);
}

#[test]
fn downstream_url_points_every_service_and_per_service_env_wins() {
    let c = load(
        "",
        &[
            ("DOWNSTREAM_URL", "http://127.0.0.1:9000/"),
            (
                "SERVICE_AI_AGENT_ENDPOINTS",
                "http://127.0.0.1:9100/a, http://127.0.0.1:9101/a",
            ),
        ],
    )
    .unwrap();
    assert_eq!(c.services[0].endpoints, ["http://127.0.0.1:9000/jobs"]);
    assert_eq!(
        c.services[4].endpoints,
        ["http://127.0.0.1:9100/a", "http://127.0.0.1:9101/a"]
    );
    assert!(c.echo_services.is_empty());
}

#[test]
fn errors_name_the_key() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        ("listen = \"nope\"", &[], "listen"),
        (
            "",
            &[("DATABASE_URL", "postgres://x/y")],
            "whatsapp.app_secret",
        ),
        (
            "[[services]]\nname = \"a\"\nendpoints = [\"ftp://x\"]",
            &[],
            "services[0].endpoints[0]",
        ),
        (
            "[[services]]\nname = \"a\"\nbreaker = \"weird\"",
            &[],
            "services[0].breaker",
        ),
        (
            "[[services]]\nname = \"a\"\n[routing]\ndefault_service = \"b\"",
            &[],
            "routing.default_service",
        ),
        ("[worker]\nmax_attempts = 0", &[], "worker.max_attempts"),
        ("", &[("REDIS_URL", "redis://x")], "storage.redis_url"),
        (
            "",
            &[("RATE_LIMIT_PER_MINUTE", "lots")],
            "rate_limit.per_minute (env RATE_LIMIT_PER_MINUTE)",
        ),
        ("[admin]\ntoken = \"short\"", &[], "admin.token"),
        (
            "[admin]\ntoken = \"      short          \"",
            &[],
            "admin.token",
        ),
        (
            "[whatsapp]\napp_secret = \"fifteen-chars15\"",
            &[],
            "whatsapp.app_secret",
        ),
        (
            "[whatsapp]\nverify_token = \"   \"",
            &[],
            "whatsapp.verify_token",
        ),
        (
            "[whatsapp]\ngraph_api_url = \"http://graph.example.com/v21.0\"",
            &[],
            "whatsapp.graph_api_url",
        ),
        ("ops_listen = \"nope\"", &[], "ops_listen"),
        (
            "listen = \"127.0.0.1:8080\"\nops_listen = \"127.0.0.1:8080\"",
            &[],
            "ops_listen",
        ),
        (
            "[http]\ntrusted_proxy_hops = 2",
            &[],
            "http.trusted_proxy_hops",
        ),
        (
            "[http]\ntrust_forwarded_for = true\ntrusted_proxy_hops = 0",
            &[],
            "http.trusted_proxy_hops",
        ),
        ("[http]\nmax_connections = 0", &[], "http.max_connections"),
        (
            "[http]\nheader_read_timeout_ms = 0",
            &[],
            "http.header_read_timeout_ms",
        ),
        (
            "[http]\nmax_messages_per_delivery = 0",
            &[],
            "http.max_messages_per_delivery",
        ),
        (
            "[http]\nmax_delivery_age_seconds = 0",
            &[],
            "http.max_delivery_age_seconds",
        ),
        (
            "[worker]\nmax_response_bytes = 10",
            &[],
            "worker.max_response_bytes",
        ),
        (
            "[storage]\nstore_timeout_ms = 0",
            &[],
            "storage.store_timeout_ms",
        ),
        (
            "[worker]\nretry_horizon_seconds = 0",
            &[],
            "worker.retry_horizon_seconds",
        ),
        (
            "[conversation]\nretention_days = 0",
            &[],
            "conversation.retention_days",
        ),
    ];
    for (toml, e, key) in cases {
        let err = load(toml, e).unwrap_err();
        assert_eq!(err.key(), Some(*key), "{toml:?}: {err}");
        assert!(err.to_string().contains(key));
    }
}

#[test]
fn hardening_defaults_and_keys() {
    let c = load("", &[]).unwrap();
    assert_eq!(c.ops_listen, None);
    assert_eq!(c.http.max_connections, 10_000);
    assert_eq!(c.http.header_read_timeout, Duration::from_secs(5));
    assert_eq!(c.http.max_messages_per_delivery, 1000);
    assert_eq!(c.http.max_delivery_age, c.storage.dedup_window);
    assert!(!c.http.trust_forwarded_for);
    assert_eq!(c.worker.max_response_bytes, 64 * 1024);
    assert_eq!(c.storage.store_timeout, Duration::from_secs(5));
    assert_eq!(c.worker.retry_horizon, Duration::from_secs(3600));
    assert_eq!(
        c.conversation.retention,
        Duration::from_secs(30 * 24 * 3600)
    );

    let c = load(
        "ops_listen = \"127.0.0.1:9090\"\n[http]\ntrust_forwarded_for = true\n\
             trusted_proxy_hops = 2\nmax_delivery_age_seconds = 60\n\
             [whatsapp]\ngraph_api_url = \"http://[::1]:9000/v21.0\"",
        &[],
    )
    .unwrap();
    assert_eq!(c.ops_listen, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(c.http.trusted_proxy_hops, 2);
    assert_eq!(c.http.max_delivery_age, Duration::from_secs(60));
    let c = load(
        "[http]\ntrust_forwarded_for = true\n[whatsapp]\n\
             graph_api_url = \"http://localhost:9000\"",
        &[("OPS_LISTEN_ADDR", "127.0.0.1:9091")],
    )
    .unwrap();
    assert_eq!(c.http.trusted_proxy_hops, 1);
    assert_eq!(c.ops_listen.unwrap().port(), 9091);
}

#[test]
fn a_bad_url_is_named_without_its_credentials() {
    let err = load(
        "[[services]]\nname = \"a\"\nendpoints = [\"ftp://bot:hunter2hunter2@h/x\"]",
        &[],
    )
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = load(
        "[whatsapp]\ngraph_api_url = \"http://u:hunter2hunter2@graph.example.com\"",
        &[],
    )
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let err = load("[whatsapp]\napp_secrt = \"x\"", &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(err.to_string().contains("app_secrt"), "{err}");
}

#[test]
fn secrets_never_show_in_debug() {
    let c = load("[whatsapp]\napp_secret = \"hunter2hunter2hunter2\"", &[]).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"));
}

#[test]
fn a_breaker_that_is_neither_preset_nor_table_says_what_it_takes() {
    let err = load(
        "[[services]]\nname = \"a\"\nendpoints = [\"http://127.0.0.1:9/x\"]\nbreaker = { failure_rate_threshold = 50.0 }",
        &[],
    )
    .unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("breaker must be a preset name"), "{shown}");
    assert!(shown.contains("failure_rate_percent"), "{shown}");
}

#[test]
fn actions_default_to_none_configured_with_documented_settings() {
    let c = load("", &[]).unwrap();
    assert!(c.actions.endpoints.is_empty());
    assert_eq!(c.actions.timeout, Duration::from_secs(10));
    assert_eq!(c.actions.breaker, BreakerSpec::Standard);
    assert_eq!(c.actions.max_attempts, 5);
    assert_eq!(c.actions.recovery_poll, Duration::from_secs(5));
    assert_eq!(c.actions.step_policy().unwrap().max_attempts(), 5);
}

#[test]
fn actions_are_kept_in_step_order_with_their_settings() {
    let c = load(
        r#"
        [actions]
        flag_for_review = "https://review.internal/v1/flags"
        create_order = "https://orders.internal/v1/orders"
        notify_sales = "http://127.0.0.1:9300/sales"
        timeout_ms = 2500
        breaker = "ai_agent"
        max_attempts = 7
        backoff_initial_ms = 200
        backoff_max_ms = 3000
        recovery_poll_ms = 250
        "#,
        &[],
    )
    .unwrap();
    use crate::actions::ActionType as T;
    let kinds: Vec<_> = c.actions.endpoints.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, [T::CreateOrder, T::NotifySales, T::FlagForReview]);
    assert_eq!(
        c.actions.url(T::CreateOrder),
        Some("https://orders.internal/v1/orders")
    );
    assert!(!c.actions.is_configured(T::CreateSupportTicket));
    assert_eq!(c.actions.timeout, Duration::from_millis(2500));
    assert_eq!(c.actions.breaker, BreakerSpec::AiAgent);
    assert_eq!(c.actions.max_attempts, 7);
    assert_eq!(c.actions.backoff_max, Duration::from_secs(3));
    assert_eq!(c.actions.recovery_poll, Duration::from_millis(250));
}

#[test]
fn bad_actions_settings_name_their_key() {
    let key = |toml: &str| {
        load(toml, &[])
            .unwrap_err()
            .key()
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert_eq!(
        key("[actions]\ncreate_order = \"ftp://orders/x\""),
        "actions.create_order"
    );
    // Plain http only to a loopback host; never user info.
    assert_eq!(
        key("[actions]\nnotify_sales = \"http://sales.internal/x\""),
        "actions.notify_sales"
    );
    assert_eq!(
        key("[actions]\nflag_for_review = \"https://u:p@review.internal/x\""),
        "actions.flag_for_review"
    );
    assert_eq!(
        key("[actions]\ncreate_support_ticket = \"https://user@tickets.internal/x\""),
        "actions.create_support_ticket"
    );
    assert_eq!(key("[actions]\ntimeout_ms = 0"), "actions.timeout_ms");
    assert_eq!(key("[actions]\nmax_attempts = 0"), "actions.max_attempts");
    assert_eq!(
        key("[actions]\nbackoff_initial_ms = 500\nbackoff_max_ms = 100"),
        "actions.backoff_max_ms"
    );
    assert_eq!(key("[actions]\nbreaker = \"fast\""), "actions.breaker");
    assert_eq!(
        key("[actions]\nbreaker = { failure_rate_percent = 0.0, open_seconds = 5 }"),
        "actions.breaker.failure_rate_percent"
    );
    // Unknown keys, and unknown action types, are refused by the parser.
    for toml in [
        "[actions]\nlaunch_rocket = \"https://x.internal\"",
        "[actions]\ntimeout = 5",
    ] {
        assert!(
            matches!(load(toml, &[]), Err(ConfigError::Parse { .. })),
            "{toml}"
        );
    }
}

#[test]
fn backend_defaults_follow_the_database_url() {
    let c = load("", &[("DATABASE_URL", "postgres://localhost/x")]);
    // Postgres generates nothing, so the missing secret is the error.
    assert!(c.unwrap_err().to_string().contains("whatsapp.app_secret"));
    let secrets = "[whatsapp]\napp_secret = \"s3cret-s3cret-s3cret\"\nverify_token = \"verify-token-0123\"\n\
                   [[services]]\nname = \"a\"\nendpoints = [\"http://127.0.0.1:1/\"]\n";
    let c = load(secrets, &[("DATABASE_URL", "postgres://localhost/x")]).unwrap();
    assert_eq!(c.storage.backend, Backend::Postgres);
    let c = load("[storage]\nsqlite_path = \"/tmp/x/y.db\"", &[]).unwrap();
    assert_eq!(c.storage.backend, Backend::Sqlite);
    assert_eq!(
        c.storage.sqlite_path,
        std::path::PathBuf::from("/tmp/x/y.db")
    );
    assert!(
        !c.generated.is_empty(),
        "SQLite with nothing set still generates secrets"
    );
    assert_eq!(
        c.echo_services.len(),
        5,
        "and answers with the echo downstream"
    );
}

#[test]
fn memory_is_an_explicit_choice() {
    let c = load("[storage]\nbackend = \"memory\"", &[]).unwrap();
    assert!(c.is_demo());
    let demo = Overrides {
        demo: true,
        ..Overrides::default()
    };
    let c = Config::from_toml("", &HashMap::new(), &demo).unwrap();
    assert!(c.is_demo());
    assert_eq!(c.storage.backend, Backend::Memory);
}

#[test]
fn contradictory_backends_are_refused_naming_the_key() {
    let err = |toml: &str, e: &[(&str, &str)]| load(toml, e).unwrap_err().to_string();
    let e = err("[storage]\nbackend = \"postgres\"", &[]);
    assert!(
        e.contains("storage.backend") && e.contains("database_url"),
        "{e}"
    );
    let e = err(
        "[storage]\nbackend = \"sqlite\"",
        &[("DATABASE_URL", "postgres://localhost/x")],
    );
    assert!(
        e.contains("storage.backend") && e.contains("unset one"),
        "{e}"
    );
    let e = err("[storage]\nbackend = \"mysql\"", &[]);
    assert!(e.contains("storage.backend") && e.contains("mysql"), "{e}");
    let e = err("[storage]\nsqlite_path = \"\"", &[]);
    assert!(e.contains("storage.sqlite_path"), "{e}");
    let e = err("", &[("REDIS_URL", "redis://localhost")]);
    assert!(e.contains("storage.redis_url"), "{e}");
    let e = err(
        "[storage]\nbackend = \"sqlite\"",
        &[("REDIS_URL", "redis://localhost")],
    );
    assert!(e.contains("storage.redis_url"), "{e}");
}
