//! The `etcd` target: a minimal etcd v3 client over our own `.proto` (KV.Put, KV.Range and
//! KV.Txn).
//!
//! etcd's best set-up, as the comparison asks: every client at the leader (found with
//! Maintenance Status), one HTTP/2 connection per `--clients-per-connection` clients
//! (client `i` uses connection `i % n`). If no leader can be found the connections go to the
//! endpoints in turn. Reads use etcd's default linearizable Range (TiKV's raw get also
//! reads at the leader).
//!
//! A `txn-transfer` is etcd's optimistic transaction, as its STM does it: Range both
//! accounts (together), then one Txn whose compares require both accounts' `mod_revision`
//! to be the ones read and whose success branch puts both new balances. A failed compare
//! means another transfer wrote one of them in between: a conflict, and nothing was written.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::backend::{Backend, BankSum, TxnError};
use crate::workload::{account_key, accounts_range, encode_balance, parse_balance, Transfer};
use crate::BenchError;

/// Generated from `proto/etcd_kv.proto`.
#[allow(clippy::all)]
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-request deadline: a request stuck longer is counted as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Accounts per Range when the bank is summed (keeps each answer far below the default 4 MiB
/// gRPC message limit).
const SUM_PAGE: i64 = 10_000;

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
    /// Every connection the run opened (see [`EtcdBackend::connect`]).
    all: Vec<KvClient<Channel>>,
    /// The one this handle sends to.
    mine: KvClient<Channel>,
}

/// Where the clients of a run send, as [`EtcdBackend::connect`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Every connection goes to the leader (its URL): no member forwards a request.
    Leader(String),
    /// The leader could not be found (why); connections go to the endpoints in turn.
    Spread(String),
}

impl EtcdBackend {
    /// Opens one connection per `clients_per_connection` clients. etcd's best set-up is
    /// clients at the leader (a follower forwards every write and linearizable read to it,
    /// one more hop): each endpoint is asked for its Maintenance Status and every
    /// connection goes to the member that is the leader. If no endpoint names a leader
    /// among them, the connections go to the endpoints in turn (at least one each). Any
    /// endpoint failing to connect fails the whole run, since a comparison with a member
    /// missing would not be the one asked for.
    pub async fn connect(
        endpoints: &[String],
        clients: usize,
        clients_per_connection: usize,
    ) -> Result<(Self, Placement), BenchError> {
        let urls: Vec<String> = endpoints.iter().map(|e| endpoint_url(e)).collect();
        let mut probes = Vec::with_capacity(urls.len());
        for url in &urls {
            probes.push(open_channel(url).await?);
        }
        let placement = find_leader(&urls, &probes).await;
        let wanted = clients.div_ceil(clients_per_connection.max(1)).max(1);
        let mut all = Vec::with_capacity(wanted);
        match &placement {
            Placement::Leader(url) => {
                let at = urls.iter().position(|u| u == url).unwrap_or(0);
                all.push(KvClient::new(probes[at].clone()));
                while all.len() < wanted {
                    all.push(KvClient::new(open_channel(url).await?));
                }
            }
            Placement::Spread(_) => {
                for p in &probes {
                    all.push(KvClient::new(p.clone()));
                }
                let mut i = 0;
                while all.len() < wanted {
                    all.push(KvClient::new(open_channel(&urls[i % urls.len()]).await?));
                    i += 1;
                }
            }
        }
        let mine = all.first().cloned().ok_or_else(|| BenchError::Connect {
            target: "etcd",
            detail: "no endpoints".into(),
        })?;
        Ok((EtcdBackend { all, mine }, placement))
    }
}

/// A new HTTP/2 connection to `url`.
async fn open_channel(url: &str) -> Result<Channel, BenchError> {
    let err = |detail: String| BenchError::Connect {
        target: "etcd",
        detail: format!("{url}: {detail}"),
    };
    Endpoint::from_shared(url.to_string())
        .map_err(|e| err(format!("not a valid address ({e})")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| err(error_chain(&e)))
}

/// The URL of the member that is the leader: the one whose own member id is the leader id
/// that the members report. `Spread` with the reason when none can be found.
async fn find_leader(urls: &[String], channels: &[Channel]) -> Placement {
    let mut leaders = Vec::new();
    let mut members = Vec::new();
    let mut errors = Vec::new();
    for (url, ch) in urls.iter().zip(channels) {
        match MaintenanceClient::new(ch.clone())
            .status(pb::StatusRequest {})
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                members.push((r.header.map(|h| h.member_id).unwrap_or(0), url));
                if r.leader != 0 {
                    leaders.push(r.leader);
                }
            }
            Err(e) => errors.push(format!("{url}: {}", status_text(e))),
        }
    }
    // The highest-term view would be best; members that answer at once agree in practice,
    // and a disagreement (an election under way) falls back to spreading.
    leaders.sort_unstable();
    leaders.dedup();
    match leaders.as_slice() {
        [id] => match members.iter().find(|(m, _)| m == id) {
            Some((_, url)) => Placement::Leader((*url).clone()),
            None => Placement::Spread(format!("leader {id:x} is not among the endpoints")),
        },
        [] if errors.is_empty() => Placement::Spread("no member knows a leader".into()),
        [] => Placement::Spread(format!("no Status answer: {}", errors.join("; "))),
        many => Placement::Spread(format!("members disagree on the leader: {many:x?}")),
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

/// A put as one operation of a Txn.
fn put_op(key: Vec<u8>, value: Vec<u8>) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key,
            value,
        })),
    }
}

/// The compare "`key`'s mod_revision is still `mod_revision`".
fn unchanged_since(key: Vec<u8>, mod_revision: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Mod as i32,
        key,
        target_union: Some(pb::compare::TargetUnion::ModRevision(mod_revision)),
    }
}

/// The one Txn of a transfer: if neither account changed since it was read (at `from_rev`
/// and `to_rev`), write both new balances.
pub fn transfer_request(from: (Vec<u8>, i64, u64), to: (Vec<u8>, i64, u64)) -> pb::TxnRequest {
    let ((from_key, from_rev, from_balance), (to_key, to_rev, to_balance)) = (from, to);
    pb::TxnRequest {
        compare: vec![
            unchanged_since(from_key.clone(), from_rev),
            unchanged_since(to_key.clone(), to_rev),
        ],
        success: vec![
            put_op(from_key, encode_balance(from_balance)),
            put_op(to_key, encode_balance(to_balance)),
        ],
        failure: Vec::new(),
    }
}

impl EtcdBackend {
    /// One account's balance and the revision it was last written at.
    async fn read_account(&self, index: u64) -> Result<(Vec<u8>, i64, u64), TxnError> {
        let key = account_key(index);
        let resp = self
            .mine
            .clone()
            .range(pb::RangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| TxnError::Other(status_text(s)))?
            .into_inner();
        let kv = resp.kvs.into_iter().next().ok_or_else(|| {
            TxnError::Other(format!(
                "account {} is missing",
                String::from_utf8_lossy(&key)
            ))
        })?;
        let balance = parse_balance(&kv.value).map_err(TxnError::Other)?;
        Ok((key, kv.mod_revision, balance))
    }
}

impl Backend for EtcdBackend {
    fn for_client(&self, index: usize) -> Self {
        EtcdBackend {
            all: self.all.clone(),
            // Clients take the connections in turn, so each carries at most
            // clients-per-connection of them.
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

    async fn preload_accounts(&self, first: u64, count: u64, balance: u64) -> Result<(), String> {
        let success = (first..first + count)
            .map(|i| put_op(account_key(i), encode_balance(balance)))
            .collect();
        let resp = self
            .mine
            .clone()
            .txn(pb::TxnRequest {
                success,
                ..Default::default()
            })
            .await
            .map_err(status_text)?
            .into_inner();
        // No compares: the success branch always runs.
        if resp.succeeded {
            Ok(())
        } else {
            Err("etcd did not run an unconditional Txn".into())
        }
    }

    async fn transfer(&self, t: Transfer) -> Result<(), TxnError> {
        // Both reads at once: each is a linearizable Range of its own.
        let (from, to) = tokio::join!(self.read_account(t.from), self.read_account(t.to));
        let ((from_key, from_rev, from_balance), (to_key, to_rev, to_balance)) = (from?, to?);
        let (new_from, new_to) = t.apply(from_balance, to_balance).map_err(TxnError::Other)?;
        let request = transfer_request((from_key, from_rev, new_from), (to_key, to_rev, new_to));
        let resp = self
            .mine
            .clone()
            .txn(request)
            .await
            .map_err(|s| TxnError::Other(status_text(s)))?
            .into_inner();
        if resp.succeeded {
            Ok(())
        } else {
            Err(TxnError::Conflict(
                "etcd Txn compare failed: an account's mod_revision changed after it was read"
                    .into(),
            ))
        }
    }

    async fn sum_accounts(&self, accounts: u64) -> Result<BankSum, String> {
        let (mut key, end) = accounts_range(accounts);
        let mut sum = BankSum::default();
        // Every page at the first page's revision: one consistent view of the bank.
        let mut revision = 0;
        loop {
            let resp = self
                .mine
                .clone()
                .range(pb::RangeRequest {
                    key: key.clone(),
                    range_end: end.clone(),
                    limit: SUM_PAGE,
                    revision,
                    ..Default::default()
                })
                .await
                .map_err(status_text)?
                .into_inner();
            if revision == 0 {
                revision = resp.header.as_ref().map_or(0, |h| h.revision);
            }
            for kv in &resp.kvs {
                sum.accounts += 1;
                sum.total += u128::from(parse_balance(&kv.value)?);
            }
            match resp.kvs.last() {
                Some(last) if resp.more => {
                    key = last.key.clone();
                    key.push(0);
                }
                _ => return Ok(sum),
            }
        }
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
            revision: 6,
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
                4 << 3,
                6,
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

    /// The Txn messages as etcd's rpc.proto numbers them: TxnRequest{compare=1, success=2,
    /// failure=3}, Compare{result=1, target=2, key=3, mod_revision=6}, RequestOp{
    /// request_range=1, request_put=2}; enums MOD=2, EQUAL=0, GREATER=1.
    #[test]
    fn txn_wire_field_numbers_match_etcd() {
        let cmp = pb::Compare {
            result: pb::compare::CompareResult::Greater as i32,
            target: pb::compare::CompareTarget::Mod as i32,
            key: b"k".to_vec(),
            target_union: Some(pb::compare::TargetUnion::ModRevision(9)),
        }
        .encode_to_vec();
        assert_eq!(
            cmp,
            vec![1 << 3, 1, 2 << 3, 2, 3 << 3 | 2, 1, b'k', 6 << 3, 9]
        );
        // EQUAL is 0, the default: not on the wire at all.
        let eq = unchanged_since(b"k".to_vec(), 9).encode_to_vec();
        assert_eq!(eq, vec![2 << 3, 2, 3 << 3 | 2, 1, b'k', 6 << 3, 9]);
        // The other targets of the oneof.
        for (target, tag) in [
            (pb::compare::TargetUnion::Version(1), 4u8),
            (pb::compare::TargetUnion::CreateRevision(1), 5),
        ] {
            let c = pb::Compare {
                target_union: Some(target),
                ..Default::default()
            }
            .encode_to_vec();
            assert_eq!(c, vec![tag << 3, 1]);
        }
        assert_eq!(pb::compare::CompareTarget::Version as i32, 0);
        assert_eq!(pb::compare::CompareTarget::Create as i32, 1);
        assert_eq!(pb::compare::CompareTarget::Value as i32, 3);
        assert_eq!(pb::compare::CompareTarget::Lease as i32, 4);
        assert_eq!(pb::compare::CompareResult::Less as i32, 2);
        assert_eq!(pb::compare::CompareResult::NotEqual as i32, 3);

        let put = put_op(b"k".to_vec(), b"7".to_vec()).encode_to_vec();
        let inner = [1 << 3 | 2, 1, b'k', 2 << 3 | 2, 1, b'7'];
        assert_eq!(put, [&[2 << 3 | 2, inner.len() as u8][..], &inner].concat());
        let range = pb::RequestOp {
            request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })),
        }
        .encode_to_vec();
        assert_eq!(range, vec![1 << 3 | 2, 3, 1 << 3 | 2, 1, b'k']);

        let txn = pb::TxnRequest {
            compare: vec![pb::Compare::default()],
            success: vec![pb::RequestOp::default()],
            failure: vec![pb::RequestOp::default()],
        }
        .encode_to_vec();
        assert_eq!(txn, vec![1 << 3 | 2, 0, 2 << 3 | 2, 0, 3 << 3 | 2, 0]);

        // A TxnResponse as etcd sends it: header (1), succeeded (2), responses (3) holding a
        // response_put (2) with its header, and a response_range (1).
        let put_resp = [2 << 3 | 2, 4, 1 << 3 | 2, 2, 3 << 3, 5];
        let range_resp = [1 << 3 | 2, 2, 4 << 3, 1];
        let mut bytes = vec![1 << 3 | 2, 2, 3 << 3, 5, 2 << 3, 1];
        bytes.extend_from_slice(&[3 << 3 | 2, put_resp.len() as u8]);
        bytes.extend_from_slice(&put_resp);
        bytes.extend_from_slice(&[3 << 3 | 2, range_resp.len() as u8]);
        bytes.extend_from_slice(&range_resp);
        let resp = pb::TxnResponse::decode(bytes.as_slice()).unwrap();
        assert!(resp.succeeded);
        assert_eq!(resp.header.unwrap().revision, 5);
        assert_eq!(resp.responses.len(), 2);
        match &resp.responses[0].response {
            Some(pb::response_op::Response::ResponsePut(p)) => {
                assert_eq!(p.header.as_ref().unwrap().revision, 5)
            }
            other => panic!("{other:?}"),
        }
        match &resp.responses[1].response {
            Some(pb::response_op::Response::ResponseRange(r)) => assert_eq!(r.count, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_transfer_is_one_txn_guarded_by_both_mod_revisions() {
        let req = transfer_request((b"a".to_vec(), 11, 900), (b"b".to_vec(), 12, 1100));
        assert_eq!(
            req.compare,
            vec![
                unchanged_since(b"a".to_vec(), 11),
                unchanged_since(b"b".to_vec(), 12)
            ]
        );
        assert_eq!(
            req.success,
            vec![
                put_op(b"a".to_vec(), b"900".to_vec()),
                put_op(b"b".to_vec(), b"1100".to_vec())
            ]
        );
        assert!(req.failure.is_empty());
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = EtcdBackend::connect(&[format!("127.0.0.1:{port}")], 1, 8)
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
