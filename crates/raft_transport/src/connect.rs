//! Opening a gRPC connection to a store: resolve its address, then connect with the
//! transport's connection options (TCP_NODELAY, HTTP/2 keepalive, message-size limits,
//! mutual TLS when configured).

use proto::tikvpb::tikv_client::TikvClient;
use tonic::transport::{Channel, Endpoint};

use crate::config::Config;
use crate::resolver::{ResolveError, StoreResolver};

/// Why a store could not be reached, or a stream to it broke.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("resolving store {0} timed out")]
    ResolveTimeout(u64),
    #[error("bad address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("connecting to {addr} failed: {reason}")]
    Connect { addr: String, reason: String },
    #[error("rpc failed: {code:?} {message}")]
    Rpc { code: tonic::Code, message: String },
    #[error("stream ended by the receiver")]
    Ended,
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

impl From<tonic::Status> for LinkError {
    fn from(s: tonic::Status) -> Self {
        LinkError::Rpc {
            code: s.code(),
            message: s.message().to_owned(),
        }
    }
}

/// Resolves `store_id` and connects to it. Both steps are bounded by the connect timeout.
pub(crate) async fn connect(
    store_id: u64,
    resolver: &dyn StoreResolver,
    cfg: &Config,
) -> Result<(String, TikvClient<Channel>), LinkError> {
    let addr = tokio::time::timeout(cfg.connect_timeout, resolver.resolve(store_id))
        .await
        .map_err(|_| LinkError::ResolveTimeout(store_id))??;
    let endpoint = endpoint(&addr, cfg)?;
    let channel = tokio::time::timeout(cfg.connect_timeout, endpoint.connect())
        .await
        .map_err(|_| LinkError::Timeout(cfg.connect_timeout))?
        .map_err(|e| LinkError::Connect {
            addr: addr.clone(),
            reason: error_chain(&e),
        })?;
    let client = TikvClient::new(channel)
        .max_encoding_message_size(cfg.max_message_size)
        .max_decoding_message_size(cfg.max_message_size);
    Ok((addr, client))
}

fn endpoint(addr: &str, cfg: &Config) -> Result<Endpoint, LinkError> {
    // Stores advertise "host:port" like TiKV; tonic wants a URI, https:// for TLS.
    let uri = security::url(addr, cfg.tls.as_ref());
    let bad = |reason: String| LinkError::BadAddress {
        addr: addr.to_owned(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(uri).map_err(|e| bad(e.to_string()))?;
    if let Some(tls) = &cfg.tls {
        endpoint = endpoint
            .tls_config(tls.client_config())
            .map_err(|e| bad(error_chain(&e)))?;
    }
    Ok(endpoint
        .connect_timeout(cfg.connect_timeout)
        // Raft messages are small and latency-bound: never wait for Nagle.
        .tcp_nodelay(true)
        // Pings notice a peer that vanished without closing the socket (host down, cable
        // pulled), which would otherwise leave the stream silently stuck.
        .http2_keep_alive_interval(cfg.keepalive_interval)
        .keep_alive_timeout(cfg.keepalive_timeout)
        .keep_alive_while_idle(true)
        .tcp_keepalive(Some(cfg.keepalive_interval)))
}

/// `e` with its sources, which is where tonic puts the useful part ("connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
