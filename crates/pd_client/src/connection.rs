//! The connection to PD and the one retry loop every call goes through.
//!
//! `Shared` holds the current connection (a tonic channel to the member that answered
//! GetMembers), the cluster id learned at connect, and the operator sink. A call
//! (`Shared::call`) stamps the request with `RequestHeader{cluster_id}`, checks the
//! response header, and on a transport failure drops the connection (only if nobody
//! replaced it meanwhile, tracked by a generation number), dials again and repeats, with
//! backoff, until the retry deadline.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use proto::pdpb::{self, pd_client::PdClient as PdGrpc, RequestHeader, ResponseHeader};
use tonic::transport::{Channel, Endpoint};

use crate::config::{Backoff, Config};
use crate::error::{check_header, is_transport_failure, Error, Result};
use crate::operator::OperatorSink;

/// A request type with a `header` field, so the retry loop can stamp it.
pub(crate) trait Request: Clone + Send + 'static {
    fn set_header(&mut self, h: RequestHeader);
}

/// A response type with a `header` field, so the retry loop can check it.
pub(crate) trait Response: Send + 'static {
    fn header(&self) -> Option<&ResponseHeader>;
}

macro_rules! headers {
    (requests: $($req:ty),* ; responses: $($resp:ty),* $(,)?) => {
        $(impl Request for $req {
            fn set_header(&mut self, h: RequestHeader) {
                self.header = Some(h);
            }
        })*
        $(impl Response for $resp {
            fn header(&self) -> Option<&ResponseHeader> {
                self.header.as_ref()
            }
        })*
    };
}

headers!(
    requests: pdpb::BootstrapRequest, pdpb::IsBootstrappedRequest, pdpb::AllocIdRequest,
        pdpb::GetStoreRequest, pdpb::PutStoreRequest, pdpb::GetAllStoresRequest,
        pdpb::StoreHeartbeatRequest, pdpb::GetRegionRequest, pdpb::GetRegionByIdRequest,
        pdpb::ScanRegionsRequest, pdpb::AskBatchSplitRequest, pdpb::ReportBatchSplitRequest,
        pdpb::GetClusterConfigRequest, pdpb::GetGcSafePointRequest,
        pdpb::UpdateGcSafePointRequest, pdpb::TsoRequest;
    responses: pdpb::BootstrapResponse, pdpb::IsBootstrappedResponse, pdpb::AllocIdResponse,
        pdpb::GetStoreResponse, pdpb::PutStoreResponse, pdpb::GetAllStoresResponse,
        pdpb::StoreHeartbeatResponse, pdpb::GetRegionResponse, pdpb::ScanRegionsResponse,
        pdpb::AskBatchSplitResponse, pdpb::ReportBatchSplitResponse,
        pdpb::GetClusterConfigResponse, pdpb::GetGcSafePointResponse,
        pdpb::UpdateGcSafePointResponse, pdpb::TsoResponse,
);

/// One live connection.
pub(crate) struct Connection {
    pub(crate) grpc: PdGrpc<Channel>,
    /// The URL it goes to (for logs).
    pub(crate) url: String,
    /// Increases with every new connection, so a failure on an old one does not tear
    /// down its replacement.
    pub(crate) generation: u64,
}

/// State shared by the client's handles and its background tasks.
pub(crate) struct Shared {
    pub(crate) endpoints: Vec<String>,
    pub(crate) cfg: Config,
    pub(crate) cluster_id: u64,
    current: RwLock<Option<Arc<Connection>>>,
    /// Held while dialing, so concurrent failures cause one reconnect, not many.
    dialing: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    pub(crate) sink: RwLock<Option<OperatorSink>>,
}

/// Turns "host:port" into "http://host:port"; rejects what tonic cannot dial. `https://`
/// is accepted: the scheme is finally chosen by the client's TLS setting (see `endpoint`).
pub fn normalize_endpoint(endpoint: &str) -> Result<String> {
    let e = endpoint.trim();
    let invalid = |reason: &str| Error::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    if e.is_empty() {
        return Err(invalid("empty"));
    }
    let url = if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(invalid("only http:// and https:// endpoints are supported"));
    }
    Endpoint::from_shared(url.clone()).map_err(|err| invalid(&err.to_string()))?;
    Ok(url.trim_end_matches('/').to_string())
}

/// An endpoint for `url` (already in the scheme [`with_scheme`] gives it), with TLS when
/// the client has it.
fn endpoint(url: &str, cfg: &Config) -> Result<Endpoint> {
    let invalid = |reason: String| Error::InvalidEndpoint {
        endpoint: url.to_string(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(cfg.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(cfg.keep_alive_interval)
        .keep_alive_timeout(cfg.keep_alive_timeout)
        .keep_alive_while_idle(true);
    if let Some(tls) = &cfg.tls {
        endpoint = endpoint
            .tls_config(tls.client_config())
            .map_err(|e| invalid(error_chain(&e)))?;
    }
    Ok(endpoint)
}

/// `url` with the scheme the client's setting needs: a member may announce `http://` while
/// we speak TLS (or the other way round in a misconfiguration, which then fails loudly at
/// the handshake rather than silently downgrading).
fn with_scheme(url: &str, cfg: &Config) -> String {
    security::url(url, cfg.tls.as_ref())
}

/// An error with its causes, which is where a transport error says what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// What GetMembers told us about one endpoint.
struct Reached {
    grpc: PdGrpc<Channel>,
    url: String,
    cluster_id: u64,
    leader_urls: Vec<String>,
}

/// Dials `url` and asks it for the members; `expect` is the cluster the client belongs to.
async fn reach(url: &str, cfg: &Config, expect: Option<u64>) -> Result<Reached> {
    const CALL: &str = "GetMembers";
    let url = &with_scheme(url, cfg);
    let channel = endpoint(url, cfg)?
        .connect()
        .await
        .map_err(|e| Error::Rpc {
            call: "connect",
            status: tonic::Status::unavailable(format!("{url}: {}", error_chain(&e))),
        })?;
    let mut grpc = PdGrpc::new(channel);
    let req = pdpb::GetMembersRequest {
        header: Some(RequestHeader {
            cluster_id: expect.unwrap_or(0),
            sender_id: 0,
        }),
    };
    let resp = tokio::time::timeout(cfg.rpc_timeout, grpc.get_members(req))
        .await
        .map_err(|_| Error::Timeout {
            call: CALL,
            after: cfg.rpc_timeout,
        })?
        .map_err(|status| Error::Rpc { call: CALL, status })?
        .into_inner();
    let got = resp.header.as_ref().map_or(0, |h| h.cluster_id);
    if got == 0 {
        return Err(Error::bad_response(CALL, "no cluster id in the header"));
    }
    let cluster_id = expect.unwrap_or(got);
    check_header(CALL, cluster_id, resp.header.as_ref())?;
    let leader_urls = resp
        .leader
        .map(|m| m.client_urls)
        .unwrap_or_default()
        .iter()
        .filter_map(|u| normalize_endpoint(u).ok())
        .map(|u| with_scheme(&u, cfg))
        .collect();
    Ok(Reached {
        grpc,
        url: url.to_string(),
        cluster_id,
        leader_urls,
    })
}

/// Reaches the cluster through `endpoints`, preferring the leader member it announces,
/// trying every endpoint in turn with backoff until `deadline`. A server of another
/// cluster stops the search at once: the configuration is wrong.
async fn dial(
    endpoints: &[String],
    cfg: &Config,
    expect: Option<u64>,
    deadline: Instant,
) -> Result<Reached> {
    let started = Instant::now();
    let mut backoff = Backoff::new(cfg);
    let mut last = String::from("no attempt");
    loop {
        for url in endpoints {
            match reach(url, cfg, expect).await {
                Ok(r) => return Ok(follow_leader(r, cfg).await),
                Err(e) if e.class() == crate::ErrorClass::Fatal => return Err(e),
                Err(e) => {
                    tracing::debug!(%url, "PD endpoint not usable: {e}");
                    last = format!("{url}: {e}");
                }
            }
        }
        let pause = backoff.step();
        if Instant::now() + pause >= deadline {
            return Err(Error::Unreachable {
                endpoints: endpoints.to_vec(),
                waited: started.elapsed(),
                last,
            });
        }
        tokio::time::sleep(pause).await;
    }
}

/// Moves to the leader the member announced, if it is another URL and answers for the same
/// cluster; otherwise stays with the member that answered (it may forward, and a
/// single-member PD announces itself).
async fn follow_leader(r: Reached, cfg: &Config) -> Reached {
    if r.leader_urls.is_empty() || r.leader_urls.contains(&r.url) {
        return r;
    }
    for url in &r.leader_urls {
        match reach(url, cfg, Some(r.cluster_id)).await {
            Ok(leader) => return leader,
            Err(e) => tracing::debug!(%url, "announced PD leader not reachable: {e}"),
        }
    }
    r
}

impl Shared {
    /// Connects for the first time, learning the cluster id.
    pub(crate) async fn connect(endpoints: Vec<String>, cfg: Config) -> Result<Shared> {
        let deadline = Instant::now() + cfg.retry_timeout;
        let r = dial(&endpoints, &cfg, None, deadline).await?;
        tracing::info!(url = %r.url, cluster_id = r.cluster_id, "connected to PD");
        Ok(Shared {
            endpoints,
            cluster_id: r.cluster_id,
            current: RwLock::new(Some(Arc::new(Connection {
                grpc: r.grpc,
                url: r.url,
                generation: 1,
            }))),
            dialing: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(1),
            sink: RwLock::new(None),
            cfg,
        })
    }

    /// The header every request carries.
    pub(crate) fn header(&self) -> RequestHeader {
        RequestHeader {
            cluster_id: self.cluster_id,
            sender_id: 0,
        }
    }

    /// The current connection, dialing a new one (until `deadline`) if there is none.
    pub(crate) async fn connection(&self, deadline: Instant) -> Result<Arc<Connection>> {
        if let Some(c) = self.current.read().clone() {
            return Ok(c);
        }
        let _dialing = self.dialing.lock().await;
        // Somebody else may have reconnected while we waited for the lock.
        if let Some(c) = self.current.read().clone() {
            return Ok(c);
        }
        let r = dial(&self.endpoints, &self.cfg, Some(self.cluster_id), deadline).await?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(url = %r.url, generation, "reconnected to PD");
        let c = Arc::new(Connection {
            grpc: r.grpc,
            url: r.url,
            generation,
        });
        *self.current.write() = Some(c.clone());
        Ok(c)
    }

    /// Forgets connection `generation` after a transport failure on it.
    pub(crate) fn invalidate(&self, generation: u64) {
        let mut cur = self.current.write();
        if cur.as_ref().is_some_and(|c| c.generation == generation) {
            *cur = None;
        }
    }

    /// Sends `req` with our header through `f`, checks the answer's header, and retries on
    /// transport failures and timeouts on a fresh connection until the retry deadline.
    /// Other failures (an error header, a non-transport status) return at once.
    pub(crate) async fn call<Req, Resp, F, Fut>(
        &self,
        call: &'static str,
        mut req: Req,
        f: F,
    ) -> Result<Resp>
    where
        Req: Request,
        Resp: Response,
        F: Fn(PdGrpc<Channel>, Req) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        req.set_header(self.header());
        let deadline = Instant::now() + self.cfg.retry_timeout;
        let mut backoff = Backoff::new(&self.cfg);
        loop {
            let conn = self.connection(deadline).await?;
            let failure =
                match tokio::time::timeout(self.cfg.rpc_timeout, f(conn.grpc.clone(), req.clone()))
                    .await
                {
                    Ok(Ok(resp)) => {
                        let resp = resp.into_inner();
                        check_header(call, self.cluster_id, resp.header())?;
                        return Ok(resp);
                    }
                    Ok(Err(status)) if is_transport_failure(&status) => Error::Rpc { call, status },
                    Ok(Err(status)) => return Err(Error::Rpc { call, status }),
                    Err(_) => Error::Timeout {
                        call,
                        after: self.cfg.rpc_timeout,
                    },
                };
            self.invalidate(conn.generation);
            let pause = backoff.step();
            if Instant::now() + pause >= deadline {
                return Err(failure);
            }
            tracing::debug!(url = %conn.url, "PD call failed, reconnecting: {failure}");
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme_and_bad_ones_are_refused() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint(" http://pd:2379/ ").unwrap(),
            "http://pd:2379"
        );
        assert_eq!(
            normalize_endpoint("https://pd:2379").unwrap(),
            "https://pd:2379"
        );
        for bad in ["", "   ", "unix:///tmp/pd", "ftp://pd:2379"] {
            let e = normalize_endpoint(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidEndpoint { .. }), "{bad:?}: {e}");
            assert_eq!(e.class(), crate::ErrorClass::Fatal);
        }
    }
}
