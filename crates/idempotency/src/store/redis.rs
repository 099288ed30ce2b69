//! `RedisStore`: claims and completes in one round trip each (Lua scripts, run with
//! `EVALSHA`), de-duplication with a single `SET NX PX`.
//!
//! Layout under the prefix `P`:
//! - `P:i:<scope length>:<scope>:<key>`: one string per claim record (state, expiry in ms,
//!   fence, fingerprint, encoded response), with a Redis TTL equal to the lease (in flight)
//!   or the completed TTL, so Redis itself drops old records.
//!   The scope length keeps `("a:b", "c")` and `("a", "b:c")` apart.
//! - `P:fence`: the counter fencing tokens come from (`INCR` in the claim script).
//! - `P:d:<id>`: de-duplication entries, value `1` or the processing time in ms.
//!
//! Expiry of claim records is decided by the caller's `now` (so it matches the other
//! stores); the Redis TTL is a backstop that frees memory. Both keys of a claim touch two
//! slots; on Redis Cluster put the prefix in a hash tag (`{idem}`) to keep them together.

use std::time::Duration;

use std::sync::Arc;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use tokio::sync::OnceCell;

use crate::error::Error;
use crate::key::IdempotencyKey;
use crate::response::StoredResponse;
use crate::store::{ClaimRequest, DedupStore, IdempotencyStore, StoreClaim, fenced};
use crate::timestamp::{Timestamp, millis};

// A record is one string value, `<state>:<expires ms>:<fence>:<32-byte fingerprint><response>`
// (state `i` in flight, `c` completed; the response only when completed): a GET and a
// SET ... PX per script is the least work Redis can do for a fenced compare-and-set, and it
// keeps the script cost close to a plain SET (see BENCHMARKS.md).
const CLAIM: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then
  local a = string.find(v, ':', 3, true)
  local b = string.find(v, ':', a + 1, true)
  local left = tonumber(string.sub(v, 3, a - 1)) - tonumber(ARGV[2])
  if left > 0 then
    if string.sub(v, b + 1, b + 32) ~= ARGV[1] then return {'m'} end
    if string.sub(v, 1, 1) == 'c' then return {'r', string.sub(v, b + 33)} end
    return {'f', tostring(left)}
  end
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], 'i:' .. ARGV[4] .. ':' .. fence .. ':' .. ARGV[1], 'PX', ARGV[3])
return {'e', tostring(fence)}
"#;

/// The start of the fenced scripts (complete, release): read the record under `KEYS[1]` and
/// return 0 unless it is in flight under the fence `ARGV[1]`. Leaves `v` (the record) and
/// `a`, `b` (the positions of its second and third `:`) for the rest of the script.
macro_rules! in_flight_under_fence {
    () => {
        r#"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 1) ~= 'i' then return 0 end
local a = string.find(v, ':', 3, true)
local b = string.find(v, ':', a + 1, true)
if string.sub(v, a + 1, b - 1) ~= ARGV[1] then return 0 end
"#
    };
}

const COMPLETE: &str = concat!(
    in_flight_under_fence!(),
    r#"if tonumber(string.sub(v, 3, a - 1)) <= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], 'c:' .. ARGV[3] .. ':' .. ARGV[1] .. ':' .. string.sub(v, b + 1, b + 32) .. ARGV[5], 'PX', ARGV[4])
return 1
"#
);

const RELEASE: &str = concat!(
    in_flight_under_fence!(),
    r#"redis.call('DEL', KEYS[1])
return 1
"#
);

/// A Redis [`IdempotencyStore`] and [`DedupStore`], shared by every instance using the same
/// Redis and prefix. Cheap to clone (one multiplexed, auto-reconnecting connection).
#[derive(Clone)]
pub struct RedisStore {
    conn: Arc<OnceCell<ConnectionManager>>,
    /// Set for a lazily connected store: connect on first use, again after a failure.
    client: Option<redis::Client>,
    prefix: String,
    claim: Script,
    complete: Script,
    release: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on `conn`, keys under `prefix` (e.g. `"idem"`; no trailing colon).
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        RedisStore {
            conn: Arc::new(OnceCell::new_with(Some(conn))),
            client: None,
            prefix: prefix.into(),
            claim: Script::new(CLAIM),
            complete: Script::new(COMPLETE),
            release: Script::new(RELEASE),
        }
    }

    /// Connect to `url` with bounded connect and response timeouts (so a dead Redis fails a
    /// call quickly instead of hanging a request), keys under `prefix`.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(Error::store)?;
        let conn = open(client).await?;
        Ok(Self::new(conn, prefix))
    }

    /// A store that connects to `url` on first use (and again on the next call after a
    /// failed attempt), so a service can start while Redis is down: calls fail with
    /// [`Error::StoreUnavailable`] until it is back. Fails only on a malformed URL.
    pub fn lazy(url: &str, prefix: impl Into<String>) -> Result<Self, Error> {
        let client = redis::Client::open(url).map_err(Error::store)?;
        let mut store = Self::new_unconnected(prefix.into());
        store.client = Some(client);
        Ok(store)
    }

    fn new_unconnected(prefix: String) -> Self {
        RedisStore {
            conn: Arc::new(OnceCell::new()),
            client: None,
            prefix,
            claim: Script::new(CLAIM),
            complete: Script::new(COMPLETE),
            release: Script::new(RELEASE),
        }
    }

    /// The connection (e.g. to run other commands on the same connection).
    pub async fn connection(&self) -> Result<ConnectionManager, Error> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        let client = self
            .client
            .clone()
            .ok_or_else(|| Error::store(std::io::Error::other("no Redis connection")))?;
        self.conn.get_or_try_init(|| open(client)).await.cloned()
    }

    /// Load the scripts now, so that the first claim does not pay for a `NOSCRIPT` retry.
    pub async fn load_scripts(&self) -> Result<(), Error> {
        let mut conn = self.connection().await?;
        for script in [&self.claim, &self.complete, &self.release] {
            script.load_async(&mut conn).await.map_err(Error::store)?;
        }
        Ok(())
    }

    fn record_key(&self, scope: &str, key: &IdempotencyKey) -> String {
        format!(
            "{}:i:{}:{}:{}",
            self.prefix,
            scope.len(),
            scope,
            key.as_str()
        )
    }

    fn dedup_key(&self, id: &str) -> String {
        format!("{}:d:{}", self.prefix, id)
    }
}

/// Connect with bounded connect and response timeouts and no connect retries, so that a
/// dead Redis fails a call at once instead of holding a request through a backoff: the
/// caller's store-down policy decides, and the next call connects again.
async fn open(client: redis::Client) -> Result<ConnectionManager, Error> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(2))
        .set_number_of_retries(0);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(Error::store)
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("unexpected reply from the claim script: {what}"))
}

fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn number(v: &Value) -> Result<u64, Error> {
    bulk(v)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("number expected"))
}

#[async_trait]
impl IdempotencyStore for RedisStore {
    async fn claim(&self, req: ClaimRequest<'_>) -> Result<StoreClaim, Error> {
        let mut conn = self.connection().await?;
        let reply: Vec<Value> = self
            .claim
            .key(self.record_key(req.scope, req.key))
            .key(format!("{}:fence", self.prefix))
            .arg(req.fingerprint.as_bytes().as_slice())
            .arg(req.now.as_millis())
            .arg(millis(req.lease).max(1))
            .arg(
                req.now
                    .plus(req.lease.max(Duration::from_millis(1)))
                    .as_millis(),
            )
            .invoke_async(&mut conn)
            .await
            .map_err(Error::store)?;
        let tag = reply
            .first()
            .and_then(bulk)
            .ok_or_else(|| corrupt("empty"))?;
        match (tag, reply.get(1)) {
            (b"e", Some(v)) => Ok(StoreClaim::Execute { fence: number(v)? }),
            (b"f", Some(v)) => Ok(StoreClaim::InFlight {
                retry_after: Duration::from_millis(number(v)?),
            }),
            (b"r", Some(v)) => Ok(StoreClaim::Replay(StoredResponse::decode(
                bulk(v).ok_or_else(|| corrupt("response bytes expected"))?,
            )?)),
            (b"m", _) => Ok(StoreClaim::Mismatch),
            _ => Err(corrupt("unknown tag")),
        }
    }

    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fence: u64,
        response: &StoredResponse,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<(), Error> {
        let mut conn = self.connection().await?;
        let done: i64 = self
            .complete
            .key(self.record_key(scope, key))
            .arg(fence)
            .arg(now.as_millis())
            .arg(now.plus(ttl.max(Duration::from_millis(1))).as_millis())
            .arg(millis(ttl).max(1))
            .arg(response.encode())
            .invoke_async(&mut conn)
            .await
            .map_err(Error::store)?;
        fenced(done == 1, fence)
    }

    async fn release(&self, scope: &str, key: &IdempotencyKey, fence: u64) -> Result<(), Error> {
        let mut conn = self.connection().await?;
        let done: i64 = self
            .release
            .key(self.record_key(scope, key))
            .arg(fence)
            .invoke_async(&mut conn)
            .await
            .map_err(Error::store)?;
        fenced(done == 1, fence)
    }
}

#[async_trait]
impl DedupStore for RedisStore {
    async fn insert_if_absent(
        &self,
        id: &str,
        window: Duration,
        _now: Timestamp,
    ) -> Result<bool, Error> {
        let mut conn = self.connection().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.dedup_key(id))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis(window).max(1))
            .query_async(&mut conn)
            .await
            .map_err(Error::store)?;
        Ok(set.is_some())
    }

    async fn contains(&self, id: &str, _now: Timestamp) -> Result<bool, Error> {
        let mut conn = self.connection().await?;
        let n: i64 = redis::cmd("EXISTS")
            .arg(self.dedup_key(id))
            .query_async(&mut conn)
            .await
            .map_err(Error::store)?;
        Ok(n > 0)
    }

    async fn mark(
        &self,
        id: &str,
        window: Duration,
        _now: Timestamp,
        processing_time: Option<Duration>,
    ) -> Result<(), Error> {
        let mut conn = self.connection().await?;
        let value = processing_time.map_or(1, |d| millis(d).max(1));
        redis::cmd("SET")
            .arg(self.dedup_key(id))
            .arg(value)
            .arg("PX")
            .arg(millis(window).max(1))
            .query_async::<()>(&mut conn)
            .await
            .map_err(Error::store)
    }
}
