//! The `tikv` target: `tikv_client::RawClient`, which finds regions through PD and sends raw
//! KV requests to the stores that lead them, exactly as against TiKV.

use std::time::Duration;

use tikv_client::{Config, RawClient};

use crate::backend::Backend;
use crate::BenchError;

/// How long connecting (PD members, cluster id, keyspace) may take before we give up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The client configuration for `--api-version`: API v2 addresses the DEFAULT keyspace (the
/// client then prefixes every key with the keyspace's id); API v1 sends keys as given.
pub fn client_config(api_version: u8) -> Config {
    match api_version {
        2 => Config::default().with_default_keyspace(),
        _ => Config::default(),
    }
}

/// One `RawClient` shared by every client task: it is a handle over shared connections and a
/// region cache, made to be cloned.
#[derive(Clone)]
pub struct TikvBackend {
    client: RawClient,
}

impl TikvBackend {
    pub async fn connect(pd_endpoints: &[String], api_version: u8) -> Result<Self, BenchError> {
        let connect = RawClient::new_with_config(pd_endpoints.to_vec(), client_config(api_version));
        let client = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| BenchError::Connect {
                target: "tikv",
                detail: format!(
                    "no answer from PD at {} within {CONNECT_TIMEOUT:?}",
                    pd_endpoints.join(",")
                ),
            })?
            .map_err(|e| BenchError::Connect {
                target: "tikv",
                detail: format!("PD at {}: {e}", pd_endpoints.join(",")),
            })?;
        Ok(TikvBackend { client })
    }
}

impl Backend for TikvBackend {
    fn for_client(&self, _index: usize) -> Self {
        self.clone()
    }

    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        self.client.put(key, value).await.map_err(|e| e.to_string())
    }

    async fn get(&self, key: Vec<u8>) -> Result<bool, String> {
        self.client
            .get(key)
            .await
            .map(|v| v.is_some())
            .map_err(|e| e.to_string())
    }

    async fn scan(&self, start: Vec<u8>, end: Vec<u8>, limit: u32) -> Result<usize, String> {
        self.client
            .scan(start..end, limit)
            .await
            .map(|pairs| pairs.len())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_selects_the_keyspace() {
        assert_eq!(client_config(1).keyspace, None);
        assert_eq!(client_config(2).keyspace.as_deref(), Some("DEFAULT"));
        // Everything else stays at the library's defaults.
        let mut v2 = client_config(2);
        v2.keyspace = None;
        assert_eq!(v2, Config::default());
    }

    #[tokio::test]
    async fn unreachable_pd_is_a_connect_error_not_a_hang() {
        // A port nothing listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = std::time::Instant::now();
        let err = TikvBackend::connect(&[format!("127.0.0.1:{port}")], 1)
            .await
            .err()
            .expect("nothing listens there");
        assert!(
            matches!(err, BenchError::Connect { target: "tikv", .. }),
            "{err}"
        );
        assert!(started.elapsed() <= CONNECT_TIMEOUT + Duration::from_secs(5));
    }
}
