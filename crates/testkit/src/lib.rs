//! Test support for Steadfast: each test gets its own Postgres schema and Redis key prefix on
//! the real servers, removed when the handle drops; [`spans`] records the `tracing` spans a
//! test emits.
//!
//! ```no_run
//! # async fn demo() {
//! let Some(pg) = steadfast_testkit::postgres().await else { return };
//! // pg.pool() is bound to a fresh schema: unqualified table names land there.
//! sqlx::query("CREATE TABLE t (id int)").execute(pg.pool()).await.unwrap();
//!
//! let Some(redis) = steadfast_testkit::redis().await else { return };
//! let key = redis.key("counter"); // "<unique prefix>:counter"
//! # let _ = key;
//! # }
//! ```
//!
//! When a server cannot be reached: with `CI` set the test fails (a silent skip in CI would
//! hide a broken setup); without it the helper prints why and returns `None`, so the test
//! returns early. The servers are at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `REDIS_URL` (default `redis://127.0.0.1:6379`).
#![forbid(unsafe_code)]

pub mod spans;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Default Postgres URL when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Default Redis URL when `REDIS_URL` is unset.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The Postgres URL tests use.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// The Redis URL tests use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

/// Whether we run in CI, where an unreachable service fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn unavailable(service: &str, url: &str, error: &dyn std::fmt::Display) {
    let message = format!(
        "{service} unreachable at {url}: {error}. Run scripts/start-services, or set the URL."
    );
    if in_ci() {
        panic!("{message} (CI is set, so this fails the test instead of skipping it)");
    }
    eprintln!("SKIPPED: {message}");
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A Postgres schema of this test's own, with a pool whose connections use it as `search_path`.
/// Dropping it drops the schema and everything in it.
#[derive(Debug)]
pub struct PgSchema {
    pool: PgPool,
    name: String,
    url: String,
}

impl PgSchema {
    /// A pool bound to the schema.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection options bound to the schema, to build more pools (e.g. a second "instance").
    pub fn connect_options(&self) -> PgConnectOptions {
        schema_options(&self.url, &self.name).expect("URL parsed before")
    }
}

fn schema_options(url: &str, schema: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    // Named after the schema, so the cleanup can find this test's connections.
    Ok(options
        .options([("search_path", schema)])
        .application_name(schema))
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; a short-lived thread
        // with its own runtime does the cleanup.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&url)
                    .await
                    .ok()?;
                // A connection of the test's pool may still hold locks in the schema: e.g. one
                // left idle in a transaction by a future the test dropped mid-query, whose
                // rollback needs the test's runtime, which this join is blocking. DROP would
                // wait on it forever; end those connections first, and bound the wait anyway.
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&name)
                .execute(&pool)
                .await
                .ok()?;
                sqlx::query("SET lock_timeout = '10s'")
                    .execute(&pool)
                    .await
                    .ok()?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(&pool)
                    .await
                    .ok()?;
                pool.close().await;
                Some(())
            })
        });
        let _ = cleanup.join();
    }
}

/// A fresh schema on the test Postgres, or `None` (with a printed reason) when it is
/// unreachable outside CI.
pub async fn postgres() -> Option<PgSchema> {
    let url = database_url();
    let admin = match PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            unavailable("Postgres", &url, &e);
            return None;
        }
    };
    let name = unique_name("t");
    sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
        .execute(&admin)
        .await
        .expect("create test schema");
    admin.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(schema_options(&url, &name).expect("valid DATABASE_URL"))
        .await
        .expect("connect to test schema");
    Some(PgSchema { pool, name, url })
}

/// A Redis key prefix of this test's own, with a connection manager. Dropping it deletes every
/// key under the prefix.
pub struct RedisPrefix {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for RedisPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPrefix")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisPrefix {
    /// A connection manager to the test Redis (cheap to clone).
    pub fn conn(&self) -> redis::aio::ConnectionManager {
        self.conn.clone()
    }

    /// The prefix (no trailing colon), e.g. `"t_3f2a..."`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `"<prefix>:<name>"`.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// The Redis URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}:*", self.prefix);
        let cleanup = std::thread::spawn(move || -> redis::RedisResult<()> {
            let client = redis::Client::open(url)?;
            let mut conn = client.get_connection()?;
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(keys).query::<()>(&mut conn)?;
            }
            Ok(())
        });
        let _ = cleanup.join();
    }
}

/// A fresh key prefix on the test Redis, or `None` (with a printed reason) when it is
/// unreachable outside CI.
pub async fn redis() -> Option<RedisPrefix> {
    let url = redis_url();
    let connect = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = redis::aio::ConnectionManager::new(client).await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok::<_, redis::RedisError>(conn)
    };
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(conn)) => Some(RedisPrefix {
            conn,
            prefix: unique_name("t"),
            url,
        }),
        Ok(Err(e)) => {
            unavailable("Redis", &url, &e);
            None
        }
        Err(_) => {
            unavailable("Redis", &url, &"timed out after 5 s");
            None
        }
    }
}

/// A SQLite database file of this test's own in the system's temporary directory (a file, not
/// `:memory:`, so that locking between connections is real). Nothing is created: the store's
/// connect options create the file. Dropping it removes the file, its `-wal`/`-shm`
/// companions and an instance lock's `.lock` file (the pool must be closed or dropped first
/// for the removal to be complete).
#[derive(Debug)]
pub struct SqliteFile {
    path: std::path::PathBuf,
}

impl SqliteFile {
    /// A fresh, unique path (`<temp dir>/steadfast_<uuid>.db`).
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("{}.db", unique_name("steadfast")));
        SqliteFile { path }
    }

    /// The database file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Default for SqliteFile {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal", ".lock", ".lock-journal"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}
