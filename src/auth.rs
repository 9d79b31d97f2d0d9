//! Keeping an authentication token valid for the whole life of a client.
//!
//! etcd tokens die: `simple` tokens after `--auth-token-ttl` of idleness,
//! `jwt` tokens at their expiry, and both whenever a user or role changes
//! ("revision of auth store is old"). etcd-client 0.21 re-authenticates only
//! on "invalid auth token" at the start of a call, so every call, keepalive
//! and watch of ours re-authenticates on either message and retries once. A
//! wrong password is not retried: re-authenticating fails with an
//! authentication error that goes to the caller.

use std::future::Future;

/// Re-authenticates a connection that has credentials.
#[derive(Clone)]
pub(crate) struct Auth {
    /// The connection whose shared token to refresh; `None` without
    /// credentials.
    client: Option<etcd_client::Client>,
}

impl Auth {
    pub(crate) fn new(client: &etcd_client::Client, has_credentials: bool) -> Auth {
        Auth {
            client: has_credentials.then(|| client.clone()),
        }
    }

    /// True for errors a fresh token fixes.
    pub(crate) fn is_stale_token(message: &str) -> bool {
        message.contains("invalid auth token")
            || message.contains("revision of auth store is old")
            || message.contains("user name is empty")
    }

    /// Gets a new token. Every stream and call of the connection uses it
    /// from now on.
    pub(crate) async fn refresh(&self) -> Result<(), etcd_client::Error> {
        match &self.client {
            Some(c) => {
                log::info!(
                    "os-lively: authentication token expired or invalidated; re-authenticating"
                );
                c.refresh_token().await
            }
            None => Ok(()),
        }
    }

    /// Runs `call`; if it fails for a stale token, re-authenticates and
    /// runs it once more.
    pub(crate) async fn retry<T, F, Fut>(&self, call: F) -> Result<T, etcd_client::Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        match call().await {
            Err(e) if self.client.is_some() && Auth::is_stale_token(&e.to_string()) => {
                self.refresh().await?;
                call().await
            }
            other => other,
        }
    }
}
