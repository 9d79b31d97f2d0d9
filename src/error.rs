//! One error type for the whole library.
//!
//! Every failure is a value carrying an [`ErrorKind`] (stable, mapped 1:1 to
//! the C layer's status codes) and a message that names the offending input.

use std::fmt;

/// What kind of failure an [`Error`] is. Stable: the C layer maps each kind to
/// a fixed `lively_result` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument (uuid, type, host, region, configuration value) is invalid.
    InvalidArgument,
    /// The named service does not exist.
    NotFound,
    /// A write lost its compare against a concurrent writer too many times, or
    /// a type+host pair already belongs to another uuid.
    Conflict,
    /// A record stored in etcd could not be decoded.
    CorruptRecord,
    /// etcd could not be reached, or it refused the request.
    Unavailable,
    /// The call did not finish within its deadline.
    Timeout,
    /// etcd rejected the credentials.
    Auth,
    /// The client was closed, or its runtime thread is gone.
    Closed,
    /// The call would block the thread that drives this client: a blocking
    /// call made on the library's own runtime thread. (Threads of other
    /// async runtimes, such as tokio's `spawn_blocking` pool, may call.)
    WouldDeadlock,
    /// The client was created in a parent process; a forked child must create
    /// its own client.
    Forked,
    /// A configuration value (environment variable or setter) is invalid.
    Config,
    /// A local view's watch has been disconnected for longer than its
    /// staleness bound, so it can no longer vouch for liveness.
    Stale,
    /// An unexpected internal failure.
    Internal,
    /// etcd is shedding load ("too many requests": its applied index lags
    /// far behind the committed one). Retry later with backoff.
    TooManyRequests,
    /// etcd's database reached its space quota ("database space
    /// exceeded"): writes fail until an operator compacts, defragments and
    /// disarms the NOSPACE alarm. Reads still work.
    NoSpace,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::CorruptRecord => "corrupt record",
            ErrorKind::Unavailable => "etcd unavailable",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Auth => "authentication failed",
            ErrorKind::Closed => "client closed",
            ErrorKind::WouldDeadlock => "call would deadlock",
            ErrorKind::Forked => "client used after fork",
            ErrorKind::Config => "invalid configuration",
            ErrorKind::Stale => "view is stale",
            ErrorKind::Internal => "internal error",
            ErrorKind::TooManyRequests => "etcd: too many requests",
            ErrorKind::NoSpace => "etcd: database space exceeded",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// An os-lively error: a kind plus a human message naming what went wrong.
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    /// The gRPC status code etcd answered with, when it did: what a caller
    /// decides by, never the message's text.
    grpc: Option<tonic::Code>,
}

impl Error {
    /// Builds an error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                grpc: None,
            }),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The detail message (without the kind prefix).
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// True when etcd could not be reached, shed the load, or the call timed
    /// out: the caller may retry later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::TooManyRequests
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn closed() -> Error {
        Error::new(ErrorKind::Closed, "the client is closed")
    }

    /// Wraps an etcd-client error, saying what we were doing and why it
    /// failed: the gRPC status and etcd's message, or the transport's root
    /// cause (`connection refused`, ...).
    pub(crate) fn etcd(context: &str, err: etcd_client::Error) -> Error {
        let kind = classify(&err);
        let mut e = Error::new(kind, format!("{context}: {}", sanitize(&cause(&err))));
        if let etcd_client::Error::GRpcStatus(status) = &err {
            e.inner.grpc = Some(status.code());
        }
        e
    }

    /// The gRPC status code etcd answered with, if this error is one.
    pub(crate) fn grpc_code(&self) -> Option<tonic::Code> {
        self.inner.grpc
    }

    /// True when etcd said the lease a call named is gone: gRPC NOT_FOUND,
    /// which a lease call or a transaction binding a key to a lease answers
    /// only for "requested lease not found" (matched by code, never text).
    pub(crate) fn lease_gone(&self) -> bool {
        self.grpc_code() == Some(tonic::Code::NotFound)
    }

    /// The same error with `what` (the operation) in front of its message,
    /// unless the message already starts with it: contexts added at several
    /// layers (the call, the store, the lease) never repeat.
    pub(crate) fn context(self, what: &str) -> Error {
        if what.is_empty() || starts_with_context(self.message(), what) {
            return self;
        }
        let message = format!("{what}: {}", self.message());
        let mut e = Error::new(self.kind(), message);
        e.inner.grpc = self.inner.grpc;
        e
    }
}

/// True when `message` begins with `what` as a whole context (`what: ...`
/// or `what ...`), not merely with the same letters.
fn starts_with_context(message: &str, what: &str) -> bool {
    message
        .strip_prefix(what)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':') || rest.starts_with(' '))
}

/// Why an etcd call failed, in a line: `gRPC <code>: <etcd's message>` for
/// a status etcd (or the transport) returned, with the root cause of a
/// transport failure after it; etcd-client's own wording otherwise.
fn cause(err: &etcd_client::Error) -> String {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let mut text = format!("gRPC status {:?}", status.code());
            if !status.message().is_empty() {
                text.push_str(": ");
                text.push_str(status.message());
            }
            append_sources(&mut text, std::error::Error::source(status));
            text
        }
        etcd_client::Error::TransportError(e) => {
            let mut text = format!("transport error: {e}");
            append_sources(&mut text, std::error::Error::source(e));
            text
        }
        other => other.to_string(),
    }
}

/// Appends each error of a source chain that says something new.
fn append_sources(text: &mut String, mut source: Option<&(dyn std::error::Error + 'static)>) {
    let mut depth = 0;
    while let Some(e) = source {
        let s = e.to_string();
        if !s.is_empty() && !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
        depth += 1;
        if depth > 8 {
            break;
        }
    }
}

/// Maps an etcd-client error to our kinds. Auth failures must not be retried in
/// a loop (a wrong password stays wrong), everything else on the wire is
/// "unavailable" so callers and our own loops back off and retry.
fn classify(err: &etcd_client::Error) -> ErrorKind {
    use tonic::Code;
    match err {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Auth,
            Code::DeadlineExceeded => ErrorKind::Timeout,
            Code::InvalidArgument if status.message().contains("authentication failed") => {
                ErrorKind::Auth
            }
            // etcd sends both its quota alarm and its load shedding as
            // RESOURCE_EXHAUSTED; only the text tells them apart.
            Code::ResourceExhausted if status.message().contains("database space exceeded") => {
                ErrorKind::NoSpace
            }
            Code::ResourceExhausted => ErrorKind::TooManyRequests,
            _ => ErrorKind::Unavailable,
        },
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => {
            ErrorKind::InvalidArgument
        }
        _ => ErrorKind::Unavailable,
    }
}

/// Error strings from the transport may echo request metadata; keep them to
/// one line and bounded so they are safe to log.
fn sanitize(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.len() > 400 {
        let mut cut = 400;
        while !one_line.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &one_line[..cut])
    } else {
        one_line
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.kind, self.inner.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("message", &self.inner.message)
            .finish()
    }
}

impl std::error::Error for Error {}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    fn kind(code: Code, message: &str) -> ErrorKind {
        Error::etcd(
            "t",
            etcd_client::Error::GRpcStatus(Status::new(code, message)),
        )
        .kind()
    }

    /// Contexts added at several layers never repeat, and an etcd failure
    /// says its gRPC status and message (issue 24: "is_up: is_up: grpc
    /// request error").
    #[test]
    fn messages_name_the_cause_once() {
        let e = Error::etcd(
            "is_up",
            etcd_client::Error::GRpcStatus(Status::new(
                Code::Unavailable,
                "error trying to connect: tcp connect error: Connection refused (os error 111)",
            )),
        )
        .context("is_up");
        assert_eq!(
            e.to_string(),
            "etcd unavailable: is_up: gRPC status Unavailable: error trying to connect: tcp connect error: Connection refused (os error 111)"
        );
        let e = Error::new(ErrorKind::Timeout, "close: revoking the lease timed out")
            .context("close")
            .context("close");
        assert_eq!(
            e.to_string(),
            "timed out: close: revoking the lease timed out"
        );
        // A different operation, or one that merely shares the letters, is kept.
        let e =
            Error::new(ErrorKind::NotFound, "is_up_by_type_host: no such service").context("is_up");
        assert_eq!(e.message(), "is_up: is_up_by_type_host: no such service");
        let e = Error::new(ErrorKind::Conflict, "type \"a\" is taken").context("update");
        assert_eq!(e.message(), "update: type \"a\" is taken");
        let e = Error::etcd(
            "granting a lease",
            etcd_client::Error::GRpcStatus(Status::new(
                Code::NotFound,
                "etcdserver: requested lease not found",
            )),
        );
        assert_eq!(
            e.message(),
            "granting a lease: gRPC status NotFound: etcdserver: requested lease not found"
        );
        // Known by its code, through any context added; never by text.
        assert!(e.lease_gone() && e.clone().context("update").lease_gone());
        assert!(!Error::new(ErrorKind::NotFound, "requested lease not found").lease_gone());
    }

    #[test]
    fn etcd_load_shedding_and_quota_are_their_own_kinds() {
        // etcd's own texts, both sent as RESOURCE_EXHAUSTED.
        let busy = kind(Code::ResourceExhausted, "etcdserver: too many requests");
        let full = kind(
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded",
        );
        assert_eq!(busy, ErrorKind::TooManyRequests);
        assert_eq!(full, ErrorKind::NoSpace);
        assert!(Error::new(busy, "").is_transient());
        assert!(!Error::new(full, "").is_transient(), "needs an operator");
        assert_eq!(
            kind(Code::Unavailable, "etcdserver: leader changed"),
            ErrorKind::Unavailable
        );
    }
}
