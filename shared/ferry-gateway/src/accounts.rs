//! Consumer group accounts as the gateway sees them: looked up from the SASL username
//! (`<username>-<group id>`) in Ferry's table, with the instance and task that decide whether
//! the group may read now and which topic is its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use ferry_domain::consumer_group::parse_sasl_username;
use ferry_domain::instance::{InstanceStatus, Mode, topic_name};
use ferry_domain::scram::Verifiers;
use ferry_store::{GroupRecord, Store, StoreError};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How long a successful PLAIN check is remembered (clients open several connections, and
/// argon2 is deliberately slow). A password change still counts at once: the cache key
/// includes the stored hash.
const PLAIN_CACHE_TTL: Duration = Duration::from_secs(300);
const PLAIN_CACHE_MAX: usize = 10_000;

/// A consumer group that may sign in now.
#[derive(Clone)]
pub struct Account {
    pub record: GroupRecord,
    /// The topic its consumers read (the task's current topic generation).
    pub topic: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("group", self.record.value.id())
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Account {
    pub fn group_id(&self) -> &str {
        self.record.value.id().as_str()
    }

    /// What a connection's sign-in depends on: when it changes (new password, new topic
    /// generation), the connection is closed.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}",
            self.record.value.password_hash().as_phc(),
            self.topic
        )
    }

    pub fn verifiers(&self) -> Option<&Verifiers> {
        self.record.value.scram()
    }
}

/// 32 random bytes from the system's generator (two v4 UUIDs' worth), for keys that live only
/// as long as the process: the PLAIN cache's HMAC key, the decoy SCRAM salts' key.
pub(crate) fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}

/// The accounts, read from Ferry's table.
#[derive(Debug)]
pub struct Accounts {
    store: Store,
    topic_prefix: String,
    cache_key: [u8; 32],
    plain_ok: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Accounts {
    pub fn new(store: Store, topic_prefix: impl Into<String>) -> Self {
        Self {
            store,
            topic_prefix: topic_prefix.into(),
            cache_key: random_key(),
            plain_ok: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The account of a SASL username, if it names a group of an active change-tracking
    /// instance. `None` for anything else (malformed, unknown, deleted, expired): sign-in fails
    /// the same way for all of them.
    pub async fn lookup(&self, username: &str) -> Result<Option<Account>, StoreError> {
        let Some((user, gid)) = parse_sasl_username(username) else {
            return Ok(None);
        };
        let Some(record) = self.store.find_group(&gid).await? else {
            return Ok(None);
        };
        if record.value.username() != &user {
            return Ok(None);
        }
        let instance_id = record.value.instance_id().clone();
        let Some(instance) = self.store.get_instance(&instance_id).await? else {
            return Ok(None);
        };
        if instance.value.mode() != Mode::Tracking
            || instance.value.status() != InstanceStatus::Active
        {
            return Ok(None);
        }
        let generation = self
            .store
            .get_task(&instance_id)
            .await?
            .map_or(0, |t| t.value.topic_generation);
        Ok(Some(Account {
            record,
            topic: topic_name(&self.topic_prefix, &instance_id, generation),
        }))
    }

    /// Checks a PLAIN password against the stored argon2 hash (on a blocking thread), with a
    /// short-lived cache of successes keyed by a keyed hash of username, password and stored
    /// hash. A group without SCRAM verifiers gets them here (its password was just proved).
    pub async fn check_plain(&self, account: &Account, username: &str, password: &str) -> bool {
        let phc = account.record.value.password_hash().as_phc().to_owned();
        let key = self.cache_entry(username, password, &phc);
        if self.cached(&key) {
            return true;
        }
        let pw = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&phc)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(pw.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if ok {
            self.remember(key);
            if account.verifiers().is_none() {
                self.add_verifiers(account, password).await;
            }
        }
        ok
    }

    async fn add_verifiers(&self, account: &Account, password: &str) {
        let pw = password.to_owned();
        let Ok(verifiers) = tokio::task::spawn_blocking(move || Verifiers::new(&pw)).await else {
            return;
        };
        let mut group = account.record.value.clone();
        group.set_scram(verifiers);
        match self
            .store
            .update_group(&group, account.record.version)
            .await
        {
            Ok(_) => {
                tracing::info!(group = %group.id(), "SCRAM verifiers added at the first PLAIN sign-in")
            }
            // Changed meanwhile (a new password brings its own verifiers): nothing to do.
            Err(e) => tracing::debug!(group = %group.id(), error = %e, "SCRAM verifiers not added"),
        }
    }

    fn cache_entry(&self, username: &str, password: &str, phc: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.cache_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for part in [username, password, phc] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        let cache = self.plain_ok.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .is_some_and(|at| at.elapsed() < PLAIN_CACHE_TTL)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut cache = self.plain_ok.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= PLAIN_CACHE_MAX {
            cache.retain(|_, at| at.elapsed() < PLAIN_CACHE_TTL);
            if cache.len() >= PLAIN_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, Instant::now());
    }
}
