//! The brief retry of momentary failures that every etcd call of the store
//! goes through.

use std::time::Duration;

use crate::auth::Auth;
use crate::steer::Steering;

/// Runs an etcd call, retrying briefly on failures a healthy cluster gets
/// over in milliseconds (a leader change; a member without a leader that
/// endpoint steering is about to drop). Writes are safe to retry: each is
/// guarded by compares, so one that did commit loses its compare on the
/// retry and the next read finds nothing left to do.
///
/// Such failures, and calls left unanswered for long, are also what endpoint
/// steering waits for before it probes the members.
pub(super) async fn resilient<T, F, Fut>(
    auth: &Auth,
    steering: &Steering,
    what: &str,
    call: F,
) -> Result<T, etcd_client::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut delay = Duration::from_millis(25);
    let mut attempt = 1;
    loop {
        match steering.watching(what, auth.retry(&call)).await {
            Err(e) if is_momentary(&e) => {
                steering.suspect(&format!("{what}: {e}"));
                if attempt >= MOMENTARY_ATTEMPTS {
                    return Err(e);
                }
                tokio::time::sleep(delay).await;
                delay *= 3;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Attempts of a call that fails momentarily (see [`resilient`]).
const MOMENTARY_ATTEMPTS: u32 = 3;

/// Decided by the gRPC code, never by the message: UNAVAILABLE is what etcd
/// answers for a leader change, a member without a leader, a request timed
/// out in raft, and what tonic reports when it cannot connect; UNKNOWN is
/// how tonic reports a connection that broke under a call. Everything else
/// (load shedding, quota, auth, bad requests) goes to the caller at once.
fn is_momentary(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(s) => matches!(s.code(), Code::Unavailable | Code::Unknown),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    fn grpc(code: Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(Status::new(code, message))
    }

    #[test]
    fn retries_are_decided_by_grpc_code_not_text() {
        for (code, message, retry) in [
            (Code::Unavailable, "etcdserver: leader changed", true),
            (Code::Unavailable, "etcdserver: request timed out", true),
            (Code::Unavailable, "etcdserver: no leader", true),
            (Code::Unknown, "transport error", true),
            // Texts that once decided, under codes that must not retry.
            (Code::InvalidArgument, "leader changed", false),
            (Code::FailedPrecondition, "connection closed", false),
            (
                Code::ResourceExhausted,
                "etcdserver: too many requests",
                false,
            ),
            (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
                false,
            ),
            (
                Code::PermissionDenied,
                "etcdserver: permission denied",
                false,
            ),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
                false,
            ),
        ] {
            assert_eq!(
                is_momentary(&grpc(code, message)),
                retry,
                "{code:?} {message}"
            );
        }
    }
}
