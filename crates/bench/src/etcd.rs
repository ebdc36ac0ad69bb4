//! The `etcd` target: a minimal etcd v3 client over our own `.proto` (KV.Put and KV.Range).
//!
//! One HTTP/2 connection per endpoint; client `i` uses endpoint `i % n`, so load is spread
//! over all members as etcd's own benchmark tool does with several endpoints. Reads use
//! etcd's default linearizable Range (TiKV's raw get also reads at the leader).

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::backend::Backend;
use crate::BenchError;

/// Generated from `proto/etcd_kv.proto`.
#[allow(clippy::all)]
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-request deadline: a request stuck longer is counted as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `host:port` becomes `http://host:port`; a URL with a scheme is kept.
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

#[derive(Clone)]
pub struct EtcdBackend {
    /// One client per endpoint, each over its own connection.
    all: Vec<KvClient<Channel>>,
    /// The one this handle sends to.
    mine: KvClient<Channel>,
}

impl EtcdBackend {
    /// Connects to every endpoint; any one failing fails the whole run, since a comparison
    /// with a member missing would not be the one asked for.
    pub async fn connect(endpoints: &[String]) -> Result<Self, BenchError> {
        let mut all = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let url = endpoint_url(e);
            let err = |detail: String| BenchError::Connect {
                target: "etcd",
                detail: format!("{url}: {detail}"),
            };
            let channel = Endpoint::from_shared(url.clone())
                .map_err(|e| err(format!("not a valid address ({e})")))?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| err(error_chain(&e)))?;
            all.push(KvClient::new(channel));
        }
        let mine = all.first().cloned().ok_or_else(|| BenchError::Connect {
            target: "etcd",
            detail: "no endpoints".into(),
        })?;
        Ok(EtcdBackend { all, mine })
    }
}

/// An error with its causes, since tonic's top-level message ("transport error") alone says
/// little.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn status_text(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

impl Backend for EtcdBackend {
    fn for_client(&self, index: usize) -> Self {
        EtcdBackend {
            all: self.all.clone(),
            mine: self.all[index % self.all.len()].clone(),
        }
    }

    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        let mut c = self.mine.clone();
        c.put(pb::PutRequest { key, value })
            .await
            .map(|_| ())
            .map_err(status_text)
    }

    async fn get(&self, key: Vec<u8>) -> Result<bool, String> {
        let mut c = self.mine.clone();
        let resp = c
            .range(pb::RangeRequest {
                key,
                ..Default::default()
            })
            .await
            .map_err(status_text)?;
        Ok(!resp.into_inner().kvs.is_empty())
    }

    async fn scan(&self, start: Vec<u8>, end: Vec<u8>, limit: u32) -> Result<usize, String> {
        let mut c = self.mine.clone();
        let resp = c
            .range(pb::RangeRequest {
                key: start,
                range_end: end,
                limit: i64::from(limit),
                ..Default::default()
            })
            .await
            .map_err(status_text)?;
        Ok(resp.into_inner().kvs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn endpoint_urls() {
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("http://h:1"), "http://h:1");
    }

    /// Field numbers as etcd's rpc.proto has them, checked on the encoded bytes: the tag
    /// byte of a field is `number << 3 | wire type` (2 = length-delimited, 0 = varint).
    #[test]
    fn wire_field_numbers_match_etcd() {
        let put = pb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }
        .encode_to_vec();
        assert_eq!(put, vec![1 << 3 | 2, 1, b'k', 2 << 3 | 2, 1, b'v']);

        let range = pb::RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            limit: 5,
            serializable: true,
        }
        .encode_to_vec();
        assert_eq!(
            range,
            vec![
                1 << 3 | 2,
                1,
                b'a',
                2 << 3 | 2,
                1,
                b'b',
                3 << 3,
                5,
                7 << 3,
                1
            ]
        );

        // A RangeResponse as etcd sends it: header (1), kvs (2) with key (1), create (2),
        // mod (3), version (4), value (5) and lease (6, not in our file: skipped), more (3),
        // count (4).
        let kv = [
            &[1 << 3 | 2, 1, b'x'][..],
            &[2 << 3, 7, 3 << 3, 8, 4 << 3, 1],
            &[5 << 3 | 2, 2, b'v', b'w'],
            &[6 << 3, 9],
        ]
        .concat();
        let mut bytes = vec![1 << 3 | 2, 2, 3 << 3, 42, 2 << 3 | 2, kv.len() as u8];
        bytes.extend_from_slice(&kv);
        bytes.extend_from_slice(&[3 << 3, 1, 4 << 3, 10]);
        let resp = pb::RangeResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(resp.header.unwrap().revision, 42);
        assert_eq!(resp.kvs.len(), 1);
        assert_eq!(resp.kvs[0].key, b"x");
        assert_eq!(resp.kvs[0].create_revision, 7);
        assert_eq!(resp.kvs[0].mod_revision, 8);
        assert_eq!(resp.kvs[0].version, 1);
        assert_eq!(resp.kvs[0].value, b"vw");
        assert!(resp.more);
        assert_eq!(resp.count, 10);
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = EtcdBackend::connect(&[format!("127.0.0.1:{port}")])
            .await
            .err()
            .expect("nothing listens there");
        let text = err.to_string();
        assert!(
            text.contains("etcd") && text.contains(&port.to_string()),
            "{text}"
        );
    }
}
