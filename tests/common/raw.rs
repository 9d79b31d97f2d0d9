//! A raw etcd-client (0.21) with its own tokio runtime, so synchronous tests
//! can read and write etcd directly, independently of the crate under test.

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, CompactionOptions, ConnectOptions, DeleteOptions, GetOptions, KeyValue, PutOptions,
};

/// Upper bound for any single [`Raw`] operation; exceeding it panics.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// A key-value pair as read by [`Raw`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawKv {
    pub key: String,
    pub value: Vec<u8>,
    /// Lease id attached to the key, 0 if none.
    pub lease: i64,
    pub mod_revision: i64,
    pub create_revision: i64,
    pub version: i64,
}

impl RawKv {
    fn from_kv(kv: &KeyValue) -> RawKv {
        RawKv {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            lease: kv.lease(),
            mod_revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
            version: kv.version(),
        }
    }

    /// The value as UTF-8 (lossy), handy in assertions.
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

/// A raw etcd-client plus a private tokio runtime.
///
/// All methods are synchronous and panic on error (or after 10 s), except the
/// `try_*` ones. Do not call them from inside another tokio runtime (tokio
/// forbids nested `block_on`). The runtime is a 1-worker multi-thread runtime,
/// so the client's background connection tasks keep running between calls
/// and a [`Raw::client`] clone also works when awaited from another runtime.
pub struct Raw {
    // Field order matters: drop the client before its runtime.
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Raw {
    /// Turns on etcd's auth with three users: `root`/`rootpw`, `svc`
    /// (password `svc-secret-pw`, read and write on `<ns>/`) and `ro`
    /// (`ro-secret-pw`, read only on `<ns>/`): a registering daemon and a
    /// read-only user.
    pub fn enable_auth_with_owner_and_reader(&self, ns: &str) {
        let mut c = self.client();
        let all = format!("{ns}/");
        let all2 = all.clone();
        self.block_on(async move {
            c.user_add("root", "rootpw", None).await.unwrap();
            c.user_grant_role("root", "root").await.unwrap();
            c.role_add("owner").await.unwrap();
            c.role_grant_permission(
                "owner",
                etcd_client::Permission::read_write(all).with_prefix(),
            )
            .await
            .unwrap();
            c.user_add("svc", "svc-secret-pw", None).await.unwrap();
            c.user_grant_role("svc", "owner").await.unwrap();
            c.role_add("reader").await.unwrap();
            c.role_grant_permission("reader", etcd_client::Permission::read(all2).with_prefix())
                .await
                .unwrap();
            c.user_add("ro", "ro-secret-pw", None).await.unwrap();
            c.user_grant_role("ro", "reader").await.unwrap();
            c.auth_enable().await.unwrap();
        });
    }

    /// Connect to the given endpoints (e.g. `etcd.endpoints()`).
    #[track_caller]
    pub fn connect(endpoints: &[String]) -> Raw {
        Self::connect_with_options(endpoints, Self::default_options())
    }

    /// Connect as an etcd user (for auth-enabled servers).
    #[track_caller]
    pub fn connect_with_user(endpoints: &[String], user: &str, password: &str) -> Raw {
        Self::connect_with_options(endpoints, Self::default_options().with_user(user, password))
    }

    /// Connect with explicit options.
    #[track_caller]
    pub fn connect_with_options(endpoints: &[String], options: ConnectOptions) -> Raw {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("raw-etcd")
            .enable_all()
            .build()
            .expect("build tokio runtime for Raw");
        let client = rt
            .block_on(async {
                tokio::time::timeout(OP_TIMEOUT, Client::connect(endpoints, Some(options))).await
            })
            .unwrap_or_else(|_| panic!("Raw::connect({endpoints:?}) timed out"))
            .unwrap_or_else(|e| panic!("Raw::connect({endpoints:?}): {e}"));
        Raw { client, rt }
    }

    fn default_options() -> ConnectOptions {
        ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5))
    }

    /// A clone of the underlying client, for advanced use (watch, txn, ...).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Run a future on this `Raw`'s runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Run `f` with a fresh client clone and the op timeout; panic on error.
    #[track_caller]
    fn op<T, Fut>(&self, what: &str, f: impl FnOnce(Client) -> Fut) -> T
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        match self.try_op(f) {
            Ok(v) => v,
            Err(e) => panic!("Raw::{what} failed: {e}"),
        }
    }

    fn try_op<T, Fut>(&self, f: impl FnOnce(Client) -> Fut) -> Result<T, String>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let fut = f(self.client.clone());
        match self
            .rt
            .block_on(async { tokio::time::timeout(OP_TIMEOUT, fut).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("timed out after {OP_TIMEOUT:?}")),
        }
    }

    /// The key, or `None` if absent.
    #[track_caller]
    pub fn get(&self, key: &str) -> Option<RawKv> {
        let key = key.to_owned();
        let resp = self.op("get", |mut c| async move { c.get(key, None).await });
        resp.kvs().first().map(RawKv::from_kv)
    }

    /// All keys under `prefix`, sorted by key.
    #[track_caller]
    pub fn get_prefix(&self, prefix: &str) -> Vec<RawKv> {
        let prefix = prefix.to_owned();
        let resp = self.op("get_prefix", |mut c| async move {
            c.get(prefix, Some(GetOptions::new().with_prefix())).await
        });
        let mut kvs: Vec<RawKv> = resp.kvs().iter().map(RawKv::from_kv).collect();
        kvs.sort_by(|a, b| a.key.cmp(&b.key));
        kvs
    }

    /// Sorted key names under `prefix`.
    #[track_caller]
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.get_prefix(prefix)
            .into_iter()
            .map(|kv| kv.key)
            .collect()
    }

    #[track_caller]
    pub fn put(&self, key: &str, value: &[u8]) {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.op("put", |mut c| async move { c.put(key, value, None).await });
    }

    /// Like [`Raw::put`] but returns the error (or timeout) instead of
    /// panicking; on success returns the new revision. For use in
    /// `wait_until` loops during elections/outages.
    pub fn try_put(&self, key: &str, value: &[u8]) -> Result<i64, String> {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.try_op(|mut c| async move { c.put(key, value, None).await })
            .map(|r| r.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Like [`Raw::get`] but returns the error instead of panicking.
    pub fn try_get(&self, key: &str) -> Result<Option<RawKv>, String> {
        let key = key.to_owned();
        self.try_op(|mut c| async move { c.get(key, None).await })
            .map(|r| r.kvs().first().map(RawKv::from_kv))
    }

    #[track_caller]
    pub fn put_with_lease(&self, key: &str, value: &[u8], lease: i64) {
        let (key, value) = (key.to_owned(), value.to_vec());
        self.op("put_with_lease", |mut c| async move {
            c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                .await
        });
    }

    /// Delete one key; returns the number deleted (0 or 1).
    #[track_caller]
    pub fn delete(&self, key: &str) -> i64 {
        let key = key.to_owned();
        self.op("delete", |mut c| async move { c.delete(key, None).await })
            .deleted()
    }

    /// Delete every key under `prefix`; returns the number deleted.
    #[track_caller]
    pub fn delete_prefix(&self, prefix: &str) -> i64 {
        let prefix = prefix.to_owned();
        self.op("delete_prefix", |mut c| async move {
            c.delete(prefix, Some(DeleteOptions::new().with_prefix()))
                .await
        })
        .deleted()
    }

    /// Grant a lease with `ttl` seconds; returns its id.
    #[track_caller]
    pub fn grant(&self, ttl: i64) -> i64 {
        self.op(
            "grant",
            |mut c| async move { c.lease_grant(ttl, None).await },
        )
        .id()
    }

    /// Revoke a lease (deleting its keys).
    #[track_caller]
    pub fn revoke(&self, lease: i64) {
        self.op("revoke", |mut c| async move { c.lease_revoke(lease).await });
    }

    /// Current store revision (from a response header).
    #[track_caller]
    pub fn revision(&self) -> i64 {
        let resp = self.op("revision", |mut c| async move {
            c.get(
                "\0",
                Some(GetOptions::new().with_count_only().with_limit(1)),
            )
            .await
        });
        resp.header()
            .expect("range response without header")
            .revision()
    }

    /// Compact history up to `rev` (physical, i.e. waits until applied).
    #[track_caller]
    pub fn compact(&self, rev: i64) {
        self.op("compact", |mut c| async move {
            c.compact(rev, Some(CompactionOptions::new().with_physical()))
                .await
        });
    }

    /// Ids of every lease the cluster holds.
    #[track_caller]
    pub fn leases(&self) -> Vec<i64> {
        self.op("leases", |mut c| async move { c.leases().await })
            .leases()
            .iter()
            .map(|l| l.id())
            .collect()
    }

    /// Remaining TTL of a lease in seconds, `-1` if it has expired / never
    /// existed.
    #[track_caller]
    pub fn lease_ttl(&self, lease: i64) -> i64 {
        let res = self.try_op(|mut c| async move { c.lease_time_to_live(lease, None).await });
        match res {
            Ok(r) => r.ttl(),
            Err(e) if e.contains("not found") => -1,
            Err(e) => panic!("Raw::lease_ttl failed: {e}"),
        }
    }
}
