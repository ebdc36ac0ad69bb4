//! tikv-client's errors as one line an operator can act on. Several of its variants
//! display as a protobuf debug dump or start with the client's own source location; the
//! server's message is what matters.

use tikv_client::Error;

use super::output;

/// A tikv-client error as one readable line: the server's message rather than the
/// protobuf debug dump some variants display as.
pub fn describe(e: &Error) -> String {
    match e {
        Error::Grpc(t) => format!("connection failed: {}", chain(t)),
        Error::GrpcAPI(status) => {
            let msg = status.message();
            if msg.is_empty() {
                format!("gRPC {}", status.code())
            } else {
                format!("gRPC {}: {msg}", status.code())
            }
        }
        Error::RegionError(r) => {
            if r.message.is_empty() {
                format!("region error (retry; the cluster may be moving the region): {r:?}")
            } else {
                format!("region error: {}", r.message)
            }
        }
        Error::KeyError(k) => key_error(k),
        Error::MultipleKeyErrors(es) | Error::ExtractedErrors(es) => {
            es.iter().map(describe).collect::<Vec<_>>().join("; ")
        }
        Error::UndeterminedError(inner) => format!(
            "the commit's outcome is unknown (it may have been applied): {}",
            describe(inner)
        ),
        Error::PessimisticLockError { inner, .. } => describe(inner),
        Error::RegionForKeyNotFound { key } => {
            format!("no region holds key {}", output::escape(key))
        }
        other => {
            let text = chain(other);
            if text.contains("ApiVersionNotMatched") {
                format!("{text} (give --api-version to match the cluster)")
            } else {
                text
            }
        }
    }
}

/// An error with its sources (`transport error: ... Connection refused`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = without_source_location(&e.to_string()).to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Some tikv-client messages start with the client's own source location
/// (`[/root/.cargo/.../cluster.rs:209]: PD cluster failed to respond`), which tells an
/// operator nothing; the message after it does.
fn without_source_location(message: &str) -> &str {
    match message.split_once("]: ") {
        Some((location, rest)) if location.starts_with('[') && location.contains(".rs:") => rest,
        _ => message,
    }
}

fn key_error(k: &tikv_client::ProtoKeyError) -> String {
    if let Some(lock) = &k.locked {
        return format!(
            "key {} is locked by transaction {} (retry once it finishes)",
            output::escape(&lock.key),
            lock.lock_version
        );
    }
    if let Some(c) = &k.conflict {
        return format!(
            "write conflict on key {}: transaction {} committed first (retry)",
            output::escape(&c.key),
            c.conflict_ts
        );
    }
    if !k.retryable.is_empty() {
        return format!("retryable error: {}", k.retryable);
    }
    if !k.abort.is_empty() {
        return format!("transaction aborted: {}", k.abort);
    }
    format!("key error: {k:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_locations_are_cut_from_client_messages() {
        assert_eq!(
            without_source_location("[/x/src/pd/cluster.rs:209]: PD cluster failed to respond"),
            "PD cluster failed to respond"
        );
        assert_eq!(without_source_location("[a]: b"), "[a]: b");
    }

    #[test]
    fn api_version_mismatch_names_the_flag() {
        let e = Error::KvError {
            message: "ApiVersionNotMatched: raw_get sent with api version V1".into(),
        };
        assert!(describe(&e).ends_with("(give --api-version to match the cluster)"));
    }
}
