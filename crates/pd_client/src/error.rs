//! The client's errors, grouped by what the caller should do about them
//! ([`Error::class`]):
//!
//! - [`ErrorClass::Retry`]: the cluster or the network is not ready; the same request may
//!   succeed later (PD unreachable, transport failures that outlasted the retries,
//!   `NOT_BOOTSTRAPPED`, server-side failures, a full heartbeat queue).
//! - [`ErrorClass::Fatal`]: the configuration is wrong and retrying cannot help (another
//!   cluster's PD, a tombstoned store, a bad endpoint, an incompatible server).
//! - [`ErrorClass::Invalid`]: this request is wrong for the cluster's state or the server
//!   broke the protocol (`INVALID_VALUE`, `ALREADY_BOOTSTRAPPED`, a malformed answer).
//!
//! [`check_header`] turns a response header into one of these; it is the only place a
//! `pdpb::Error` is interpreted.

use std::time::Duration;

use proto::pdpb::{self, ErrorType};
use tonic::Code;

/// Result alias of the client.
pub type Result<T> = std::result::Result<T, Error>;

/// What the caller should do about an [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later; nothing is wrong with the request or the configuration.
    Retry,
    /// Stop: the configuration is wrong (wrong cluster, store removed, bad address).
    Fatal,
    /// This request cannot succeed as it is (or the server broke the protocol).
    Invalid,
}

/// An error of a PD call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- retry later ---
    /// No endpoint could be reached (or none answered GetMembers) before the deadline.
    #[error(
        "no PD endpoint reachable within {waited:?} (tried {endpoints:?}); last error: {last}"
    )]
    Unreachable {
        /// The endpoints tried.
        endpoints: Vec<String>,
        /// How long the client kept trying.
        waited: Duration,
        /// The last failure seen.
        last: String,
    },
    /// The call failed at the gRPC level (after retries, for transport errors).
    #[error("PD call {call} failed: {status}")]
    Rpc {
        /// The RPC.
        call: &'static str,
        /// What tonic reported.
        status: tonic::Status,
    },
    /// One attempt of the call got no answer within the RPC timeout, and no retry was left.
    #[error("PD call {call} got no answer within {after:?}")]
    Timeout {
        /// The RPC.
        call: &'static str,
        /// The RPC timeout.
        after: Duration,
    },
    /// The cluster has not been bootstrapped yet.
    #[error("cluster is not bootstrapped")]
    NotBootstrapped,
    /// The server failed the request for a reason of its own (`pdpb::Error` other than the
    /// ones with a variant here).
    #[error("PD failed {call}: {kind:?}: {message}")]
    Server {
        /// The RPC.
        call: &'static str,
        /// kvproto's error class.
        kind: ErrorType,
        /// The server's explanation.
        message: String,
    },
    /// Region heartbeats are arriving faster than the stream drains them.
    #[error("region heartbeat queue is full ({0} waiting)")]
    HeartbeatBacklog(usize),
    /// The client's runtime is gone (the client is being dropped).
    #[error("PD client is shut down")]
    Shutdown,

    // --- fatal configuration ---
    /// The server belongs to another cluster than the one this client joined.
    #[error("cluster id mismatch: this client belongs to cluster {expected}, server says {got}")]
    ClusterMismatch {
        /// The cluster learned at connect.
        expected: u64,
        /// The server's cluster.
        got: u64,
    },
    /// The store was removed from the cluster for good.
    #[error("store is tombstone: {0}")]
    StoreTombstone(String),
    /// An endpoint is not a usable URL.
    #[error("invalid PD endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The client's settings cannot work.
    #[error("invalid client configuration: {0}")]
    InvalidConfig(String),
    /// The client could not start its runtime.
    #[error("starting the PD client runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The server does not speak a version of the protocol this client understands.
    #[error("PD is incompatible: {0}")]
    Incompatible(String),

    // --- invalid request ---
    /// The cluster is already bootstrapped (by someone else, or by an earlier attempt).
    #[error("cluster is already bootstrapped")]
    AlreadyBootstrapped,
    /// The server rejected the request's content.
    #[error("PD rejected {call} as invalid: {message}")]
    InvalidRequest {
        /// The RPC.
        call: &'static str,
        /// The server's explanation.
        message: String,
    },
    /// The server's answer does not follow the protocol.
    #[error("malformed PD answer to {call}: {reason}")]
    BadResponse {
        /// The RPC.
        call: &'static str,
        /// What is missing or wrong.
        reason: String,
    },
}

impl Error {
    /// What the caller should do.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Unreachable { .. }
            | Error::Timeout { .. }
            | Error::NotBootstrapped
            | Error::Server { .. }
            | Error::HeartbeatBacklog(_)
            | Error::Shutdown => ErrorClass::Retry,
            Error::Rpc { status, .. } => match status.code() {
                Code::Unimplemented => ErrorClass::Fatal,
                Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                    ErrorClass::Invalid
                }
                _ => ErrorClass::Retry,
            },
            Error::ClusterMismatch { .. }
            | Error::StoreTombstone(_)
            | Error::InvalidEndpoint { .. }
            | Error::InvalidConfig(_)
            | Error::Runtime(_)
            | Error::Incompatible(_) => ErrorClass::Fatal,
            Error::AlreadyBootstrapped
            | Error::InvalidRequest { .. }
            | Error::BadResponse { .. } => ErrorClass::Invalid,
        }
    }

    /// Shorthand for `class() == ErrorClass::Retry`.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retry
    }

    pub(crate) fn bad_response(call: &'static str, reason: impl Into<String>) -> Error {
        Error::BadResponse {
            call,
            reason: reason.into(),
        }
    }
}

/// A gRPC status that says the connection (not the request) failed, so the call is worth
/// repeating on a fresh connection.
pub(crate) fn is_transport_failure(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Cancelled | Code::Unknown | Code::DeadlineExceeded
    )
}

/// Checks a response header: it must be present, name our cluster, and carry no error.
/// The cluster is compared first, because a server of another cluster answers every
/// request with an error that would otherwise look retryable.
pub fn check_header(
    call: &'static str,
    cluster_id: u64,
    header: Option<&pdpb::ResponseHeader>,
) -> Result<()> {
    let header = header.ok_or_else(|| Error::bad_response(call, "no response header"))?;
    if header.cluster_id != cluster_id {
        return Err(Error::ClusterMismatch {
            expected: cluster_id,
            got: header.cluster_id,
        });
    }
    let Some(err) = &header.error else {
        return Ok(());
    };
    // An error type this client does not know (a newer server) is treated as UNKNOWN.
    let kind = ErrorType::try_from(err.r#type).unwrap_or(ErrorType::Unknown);
    let message = err.message.clone();
    Err(match kind {
        ErrorType::Ok => return Ok(()),
        ErrorType::NotBootstrapped => Error::NotBootstrapped,
        ErrorType::AlreadyBootstrapped => Error::AlreadyBootstrapped,
        ErrorType::StoreTombstone => Error::StoreTombstone(message),
        ErrorType::InvalidValue => Error::InvalidRequest { call, message },
        ErrorType::IncompatibleVersion => Error::Incompatible(message),
        _ => Error::Server {
            call,
            kind,
            message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(cluster_id: u64, err: Option<(i32, &str)>) -> pdpb::ResponseHeader {
        pdpb::ResponseHeader {
            cluster_id,
            error: err.map(|(t, m)| pdpb::Error {
                r#type: t,
                message: m.to_string(),
            }),
        }
    }

    fn check(h: pdpb::ResponseHeader) -> Result<()> {
        check_header("Test", 7, Some(&h))
    }

    #[test]
    fn a_clean_header_of_our_cluster_passes() {
        check(header(7, None)).unwrap();
        // An explicit OK is no error either.
        check(header(7, Some((ErrorType::Ok as i32, "")))).unwrap();
    }

    #[test]
    fn a_missing_header_is_a_protocol_error() {
        let e = check_header("Test", 7, None).unwrap_err();
        assert!(matches!(e, Error::BadResponse { call: "Test", .. }), "{e}");
        assert_eq!(e.class(), ErrorClass::Invalid);
    }

    #[test]
    fn another_clusters_answer_is_fatal_even_with_an_error_inside() {
        // A server of cluster 9 rejects our header with UNKNOWN "mismatch cluster id":
        // what matters is the cluster, not the retryable-looking error.
        let e = check(header(9, Some((ErrorType::Unknown as i32, "mismatch")))).unwrap_err();
        assert!(
            matches!(
                e,
                Error::ClusterMismatch {
                    expected: 7,
                    got: 9
                }
            ),
            "{e}"
        );
        assert_eq!(e.class(), ErrorClass::Fatal);
    }

    #[test]
    fn header_errors_become_typed_errors_in_the_right_class() {
        let cases = [
            (ErrorType::NotBootstrapped, ErrorClass::Retry),
            (ErrorType::AlreadyBootstrapped, ErrorClass::Invalid),
            (ErrorType::StoreTombstone, ErrorClass::Fatal),
            (ErrorType::InvalidValue, ErrorClass::Invalid),
            (ErrorType::IncompatibleVersion, ErrorClass::Fatal),
            (ErrorType::Unknown, ErrorClass::Retry),
            (ErrorType::RegionNotFound, ErrorClass::Retry),
        ];
        for (kind, class) in cases {
            let e = check(header(7, Some((kind as i32, "why")))).unwrap_err();
            assert_eq!(e.class(), class, "{kind:?} gave {e:?}");
        }
        assert!(matches!(
            check(header(7, Some((ErrorType::NotBootstrapped as i32, "")))),
            Err(Error::NotBootstrapped)
        ));
        assert!(matches!(
            check(header(7, Some((ErrorType::AlreadyBootstrapped as i32, "")))),
            Err(Error::AlreadyBootstrapped)
        ));
        match check(header(
            7,
            Some((ErrorType::StoreTombstone as i32, "store 3")),
        )) {
            Err(Error::StoreTombstone(m)) => assert_eq!(m, "store 3"),
            other => panic!("{other:?}"),
        }
        match check(header(7, Some((ErrorType::RegionNotFound as i32, "r")))) {
            Err(Error::Server { kind, message, .. }) => {
                assert_eq!(kind, ErrorType::RegionNotFound);
                assert_eq!(message, "r");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_error_type_from_a_newer_server_is_a_server_error() {
        match check(header(7, Some((999, "new")))) {
            Err(Error::Server { kind, .. }) => assert_eq!(kind, ErrorType::Unknown),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn grpc_statuses_are_classed_by_code() {
        let rpc = |s| Error::Rpc {
            call: "Test",
            status: s,
        };
        assert_eq!(
            rpc(tonic::Status::unavailable("down")).class(),
            ErrorClass::Retry
        );
        assert_eq!(
            rpc(tonic::Status::unimplemented("no")).class(),
            ErrorClass::Fatal
        );
        assert_eq!(
            rpc(tonic::Status::invalid_argument("bad")).class(),
            ErrorClass::Invalid
        );
        assert!(is_transport_failure(&tonic::Status::unavailable("x")));
        assert!(!is_transport_failure(&tonic::Status::invalid_argument("x")));
    }
}
