//! The Redis side of the cluster: a few commands and scripts, each bounded in
//! time, over one multiplexed connection that is made again after a failure. A
//! node must keep relaying while Redis is away: every call here fails fast
//! ([`RegistryError`]) instead of waiting, and the caller decides what that means.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Script};

/// How long one command (or connecting) may take. Redis answers in well under a
/// millisecond; a publish waits this long at worst for its lease when Redis is
/// unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Takes a lease that is free or already this node's, and extends it; answers
/// the holder: this node's id when it holds it now, another's when not.
const TAKE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder";

/// Deletes a key only while it still holds this node's value.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Why the registry could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Connecting or a command failed.
    #[error("registry: {0}")]
    Redis(#[from] redis::RedisError),
    /// Connecting or a command took longer than it may.
    #[error("registry: no answer within {CALL_TIMEOUT:?}")]
    Timeout,
}

/// A connection to Redis that is made on first use and again after a failure.
pub struct Registry {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    /// One connect at a time: the others wait for it rather than each dialling.
    connecting: tokio::sync::Mutex<()>,
    /// Whether the last call succeeded, so that losing and regaining Redis is logged
    /// once each.
    up: AtomicBool,
    take: Script,
    release: Script,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry at `url` (`redis://HOST:PORT/DB`), not connected yet.
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            up: AtomicBool::new(true),
            take: Script::new(TAKE),
            release: Script::new(RELEASE),
        })
    }

    /// Whether the last call reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RegistryError> {
        if let Some(connection) = self.cached() {
            return Ok(connection);
        }
        let _one = self.connecting.lock().await;
        if let Some(connection) = self.cached() {
            return Ok(connection);
        }
        let connection =
            tokio::time::timeout(CALL_TIMEOUT, self.client.get_multiplexed_async_connection())
                .await
                .map_err(|_| RegistryError::Timeout)??;
        *self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(connection.clone());
        Ok(connection)
    }

    /// Runs one command, bounded in time; a failure drops the connection so that
    /// the next call makes a new one.
    async fn call<T: FromRedisValue>(&self, command: Call<'_>) -> Result<T, RegistryError> {
        let result = async {
            let mut connection = self.connection().await?;
            let answer = match command {
                Call::Command(command) => command.query_async(&mut connection),
                Call::Script(invocation) => {
                    return tokio::time::timeout(
                        CALL_TIMEOUT,
                        invocation.invoke_async(&mut connection),
                    )
                    .await
                    .map_err(|_| RegistryError::Timeout)?
                    .map_err(RegistryError::from);
                }
            };
            tokio::time::timeout(CALL_TIMEOUT, answer)
                .await
                .map_err(|_| RegistryError::Timeout)?
                .map_err(RegistryError::from)
        }
        .await;
        self.note(&result);
        result
    }

    /// Logs the moment Redis is lost or regained, and forgets a broken connection.
    fn note<T>(&self, result: &Result<T, RegistryError>) {
        match result {
            Ok(_) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("registry reachable again");
                }
            }
            Err(err) => {
                let broken = match err {
                    RegistryError::Timeout => true,
                    RegistryError::Redis(err) => {
                        err.is_io_error() || err.is_connection_dropped() || err.is_timeout()
                    }
                };
                if broken {
                    *self
                        .connection
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                }
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!("registry unreachable: {err}");
                }
            }
        }
    }

    /// Takes (or extends) `key` for `holder` for `ttl` if it is free or already
    /// `holder`'s; returns the holder after the call.
    pub async fn take(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<String, RegistryError> {
        let mut invocation = self.take.prepare_invoke();
        invocation.key(key).arg(holder).arg(millis(ttl));
        self.call(Call::Script(&invocation)).await
    }

    /// Deletes `key` if it still holds `holder`.
    pub async fn release(&self, key: &str, holder: &str) -> Result<(), RegistryError> {
        let mut invocation = self.release.prepare_invoke();
        invocation.key(key).arg(holder);
        self.call::<i64>(Call::Script(&invocation)).await.map(drop)
    }

    /// `DEL key`.
    pub async fn delete(&self, key: &str) -> Result<(), RegistryError> {
        let mut command = redis::cmd("DEL");
        command.arg(key);
        self.call::<i64>(Call::Command(&command)).await.map(drop)
    }

    /// `SET key value PX ttl`.
    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), RegistryError> {
        let mut command = redis::cmd("SET");
        command.arg(key).arg(value).arg("PX").arg(millis(ttl));
        self.call::<()>(Call::Command(&command)).await
    }

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Result<Option<String>, RegistryError> {
        let mut command = redis::cmd("GET");
        command.arg(key);
        self.call(Call::Command(&command)).await
    }

    /// The values of every key starting with `prefix` (SCAN, then MGET): the
    /// cluster's nodes, a few dozen keys at most.
    pub async fn values_under(&self, prefix: &str) -> Result<Vec<String>, RegistryError> {
        let mut keys: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let mut command = redis::cmd("SCAN");
            command
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(100);
            let (next, batch): (u64, Vec<String>) = self.call(Call::Command(&command)).await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut command = redis::cmd("MGET");
        command.arg(&keys);
        let values: Vec<Option<String>> = self.call(Call::Command(&command)).await?;
        Ok(values.into_iter().flatten().collect())
    }
}

/// One request to Redis.
enum Call<'a> {
    Command(&'a redis::Cmd),
    Script(&'a redis::ScriptInvocation<'a>),
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
