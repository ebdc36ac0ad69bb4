//! The `tikv` target: `tikv_client::RawClient`, which finds regions through PD and sends raw
//! KV requests to the stores that lead them, exactly as against TiKV; and for `txn-transfer`,
//! `tikv_client::TransactionClient` (Percolator transactions, in the `--txn-mode` asked for).
//!
//! A transfer is one transaction: read both accounts (optimistic modes: one `batch_get`;
//! pessimistic: `get_for_update` of each, in key order so two transfers over the same pair
//! never wait on each other crosswise), put both new balances, commit. A failed attempt is
//! rolled back explicitly (unless its commit outcome is undetermined), and transactions are
//! created with `CheckLevel::None` so that one abandoned at the end of the run is dropped
//! quietly, its locks left to the next reader's lock resolution.

use std::sync::Arc;
use std::time::Duration;

use tikv_client::{
    CheckLevel, Config, Key, RawClient, Transaction, TransactionClient, TransactionOptions,
};

use crate::args::TxnMode;
use crate::backend::{Backend, BankSum, TxnError};
use crate::workload::{account_key, accounts_range, encode_balance, parse_balance, Transfer};
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

/// The options of every transaction in `mode`. All are created with `CheckLevel::None`: the
/// runner may abandon an attempt still in flight at the end of the run, and that must not
/// panic (the default) or warn.
pub fn transaction_options(mode: TxnMode) -> TransactionOptions {
    let options = match mode {
        TxnMode::Optimistic => TransactionOptions::new_optimistic(),
        TxnMode::Pessimistic => TransactionOptions::new_pessimistic(),
        TxnMode::AsyncCommit => TransactionOptions::new_optimistic().use_async_commit(),
        TxnMode::OnePc => TransactionOptions::new_optimistic().try_one_pc(),
    };
    options.drop_check(CheckLevel::None)
}

/// Whether `e` means another transaction got in the way (so retrying is the cure) rather
/// than a failure of the cluster or the client: a write conflict, a lock that was not
/// resolved in time, a deadlock, a retryable key error, or a lost transaction record.
pub fn is_conflict(e: &tikv_client::Error) -> bool {
    use tikv_client::Error as E;
    match e {
        E::KeyError(k) => {
            k.conflict.is_some()
                || k.locked.is_some()
                || k.deadlock.is_some()
                || k.txn_not_found.is_some()
                || k.commit_ts_expired.is_some()
                || !k.retryable.is_empty()
        }
        E::ResolveLockError(_) | E::TxnNotFound(_) => true,
        E::PessimisticLockError { inner, .. } => is_conflict(inner),
        E::MultipleKeyErrors(es) | E::ExtractedErrors(es) => {
            !es.is_empty() && es.iter().all(is_conflict)
        }
        _ => false,
    }
}

/// A one-line account of `e` for the report: the client's `Display` of key errors is a full
/// `Debug` dump of the protobuf, so those say what kind of key error it was (TiKV's own
/// `retryable` text when it sends one).
pub fn describe(e: &tikv_client::Error) -> String {
    use tikv_client::Error as E;
    match e {
        E::KeyError(k) => {
            if !k.retryable.is_empty() {
                k.retryable.clone()
            } else if k.conflict.is_some() {
                "write conflict".into()
            } else if let Some(lock) = &k.locked {
                format!("key is locked by transaction {}", lock.lock_version)
            } else if k.deadlock.is_some() {
                "deadlock".into()
            } else if k.txn_not_found.is_some() {
                "transaction not found".into()
            } else if k.commit_ts_expired.is_some() {
                "commit ts expired".into()
            } else if !k.abort.is_empty() {
                format!("abort: {}", k.abort)
            } else {
                e.to_string()
            }
        }
        E::MultipleKeyErrors(es) | E::ExtractedErrors(es) => match es.as_slice() {
            [] => e.to_string(),
            [one] => describe(one),
            [first, ..] => format!("{} errors, the first: {}", es.len(), describe(first)),
        },
        E::PessimisticLockError { inner, .. } => format!("pessimistic lock: {}", describe(inner)),
        E::UndeterminedError(inner) => format!("commit undetermined: {}", describe(inner)),
        other => other.to_string(),
    }
}

/// Why one transfer attempt failed, before classification.
enum Failure {
    /// Boxed: the client's error is large, and the happy path should not carry it.
    Client(Box<tikv_client::Error>),
    /// The data is not what the bank should hold (a missing account, not a number).
    Data(String),
}

impl From<tikv_client::Error> for Failure {
    fn from(e: tikv_client::Error) -> Self {
        Failure::Client(Box::new(e))
    }
}

impl From<Failure> for TxnError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Client(e) if is_conflict(&e) => TxnError::Conflict(describe(&e)),
            Failure::Client(e) => TxnError::Other(describe(&e)),
            Failure::Data(e) => TxnError::Other(e),
        }
    }
}

fn balance_of(key: &[u8], value: Option<Vec<u8>>) -> Result<u64, Failure> {
    let value = value.ok_or_else(|| {
        Failure::Data(format!(
            "account {} is missing",
            String::from_utf8_lossy(key)
        ))
    })?;
    parse_balance(&value).map_err(Failure::Data)
}

/// Reads both accounts, writes the new balances and commits `txn`.
async fn run_transfer(txn: &mut Transaction, mode: TxnMode, t: Transfer) -> Result<(), Failure> {
    let (from_key, to_key) = (account_key(t.from), account_key(t.to));
    let (from_value, to_value) = if mode == TxnMode::Pessimistic {
        // Lock in key order: two transfers over one pair, in opposite directions, then
        // queue on the same first key instead of each holding the key the other wants.
        let (first, second) = if from_key <= to_key {
            (&from_key, &to_key)
        } else {
            (&to_key, &from_key)
        };
        let a = txn.get_for_update(first.clone()).await?;
        let b = txn.get_for_update(second.clone()).await?;
        if first == &from_key {
            (a, b)
        } else {
            (b, a)
        }
    } else {
        let (mut from_value, mut to_value) = (None, None);
        for pair in txn
            .batch_get(vec![from_key.clone(), to_key.clone()])
            .await?
        {
            let key: Vec<u8> = pair.key().clone().into();
            if key == from_key {
                from_value = Some(pair.into_value());
            } else if key == to_key {
                to_value = Some(pair.into_value());
            }
        }
        (from_value, to_value)
    };
    let from_balance = balance_of(&from_key, from_value)?;
    let to_balance = balance_of(&to_key, to_value)?;
    let (new_from, new_to) = t.apply(from_balance, to_balance).map_err(Failure::Data)?;
    txn.put(from_key, encode_balance(new_from)).await?;
    txn.put(to_key, encode_balance(new_to)).await?;
    txn.commit().await?;
    Ok(())
}

/// Accounts per snapshot scan when the bank is summed.
const SUM_PAGE: u32 = 4096;

#[derive(Clone)]
enum Client {
    Raw(RawClient),
    /// `TransactionClient` is not `Clone`; it is a handle over shared connections too.
    Txn {
        client: Arc<TransactionClient>,
        mode: TxnMode,
    },
}

/// The client handles of a run: one `RawClient` (or `TransactionClient` for txn-transfer)
/// per `--clients-per-connection` client tasks, each with its own PD and store
/// connections, as etcd gets one connection per that many clients. Client task `i` uses
/// handle `i % n`.
#[derive(Clone)]
pub struct TikvBackend {
    all: Arc<Vec<Client>>,
    client: Client,
}

fn connect_error(pd_endpoints: &[String], detail: String) -> BenchError {
    BenchError::Connect {
        target: "tikv",
        detail: format!("PD at {}: {detail}", pd_endpoints.join(",")),
    }
}

/// One `RawClient`, or with `txn_mode` one `TransactionClient`.
async fn connect_one(
    pd_endpoints: &[String],
    api_version: u8,
    txn_mode: Option<TxnMode>,
    tls: Option<&crate::bank::TlsPaths>,
) -> Result<Client, BenchError> {
    let endpoints = pd_endpoints.to_vec();
    let mut config = client_config(api_version);
    if let Some(t) = tls {
        config = config.with_security(&t.ca, &t.cert, &t.key);
    }
    let timeout = || {
        connect_error(
            pd_endpoints,
            format!("no answer within {CONNECT_TIMEOUT:?}"),
        )
    };
    Ok(match txn_mode {
        None => {
            let connect = RawClient::new_with_config(endpoints, config);
            let raw = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| timeout())?
                .map_err(|e| connect_error(pd_endpoints, e.to_string()))?;
            Client::Raw(raw)
        }
        Some(mode) => {
            let connect = TransactionClient::new_with_config(endpoints, config);
            let txn = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| timeout())?
                .map_err(|e| connect_error(pd_endpoints, e.to_string()))?;
            Client::Txn {
                client: Arc::new(txn),
                mode,
            }
        }
    })
}

impl TikvBackend {
    /// Connects `instances` (at least one) `RawClient`s, or with `txn_mode`
    /// `TransactionClient`s (same endpoints, same API version handling).
    pub async fn connect(
        pd_endpoints: &[String],
        api_version: u8,
        txn_mode: Option<TxnMode>,
        tls: Option<&crate::bank::TlsPaths>,
        instances: usize,
    ) -> Result<Self, BenchError> {
        let mut all = Vec::with_capacity(instances.max(1));
        for _ in 0..instances.max(1) {
            all.push(connect_one(pd_endpoints, api_version, txn_mode, tls).await?);
        }
        let client = all[0].clone();
        Ok(TikvBackend {
            all: Arc::new(all),
            client,
        })
    }

    /// Client handles this run opened.
    pub fn instances(&self) -> usize {
        self.all.len()
    }

    fn raw(&self) -> Result<&RawClient, String> {
        match &self.client {
            Client::Raw(c) => Ok(c),
            Client::Txn { .. } => Err("connected for transactions, not raw requests".into()),
        }
    }

    fn txn(&self) -> Result<(&TransactionClient, TxnMode), String> {
        match &self.client {
            Client::Txn { client, mode } => Ok((client, *mode)),
            Client::Raw(_) => Err("connected for raw requests, not transactions".into()),
        }
    }
}

impl Backend for TikvBackend {
    fn for_client(&self, index: usize) -> Self {
        TikvBackend {
            all: self.all.clone(),
            client: self.all[index % self.all.len()].clone(),
        }
    }

    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        self.raw()?.put(key, value).await.map_err(|e| e.to_string())
    }

    async fn get(&self, key: Vec<u8>) -> Result<bool, String> {
        self.raw()?
            .get(key)
            .await
            .map(|v| v.is_some())
            .map_err(|e| e.to_string())
    }

    async fn scan(&self, start: Vec<u8>, end: Vec<u8>, limit: u32) -> Result<usize, String> {
        self.raw()?
            .scan(start..end, limit)
            .await
            .map(|pairs| pairs.len())
            .map_err(|e| e.to_string())
    }

    async fn preload_accounts(&self, first: u64, count: u64, balance: u64) -> Result<(), String> {
        let (client, _) = self.txn()?;
        // Plain optimistic 2PC whatever the mode: the preload is not measured.
        let mut txn = client
            .begin_with_options(transaction_options(TxnMode::Optimistic))
            .await
            .map_err(|e| e.to_string())?;
        let mut result = Ok(());
        for i in first..first + count {
            result = txn.put(account_key(i), encode_balance(balance)).await;
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = txn.commit().await.map(|_| ());
        }
        if let Err(e) = result {
            let _ = txn.rollback().await;
            return Err(e.to_string());
        }
        Ok(())
    }

    async fn transfer(&self, t: Transfer) -> Result<(), TxnError> {
        let (client, mode) = self.txn().map_err(TxnError::Other)?;
        let mut txn = client
            .begin_with_options(transaction_options(mode))
            .await
            .map_err(|e| TxnError::from(Failure::from(e)))?;
        match run_transfer(&mut txn, mode, t).await {
            Ok(()) => Ok(()),
            Err(f) => {
                // After an undetermined commit the transaction may have committed: leave it.
                // Otherwise clean up what it wrote (best effort: a lock left behind is resolved
                // by whoever meets it once its TTL runs out).
                let undetermined = matches!(&f, Failure::Client(e)
                    if matches!(**e, tikv_client::Error::UndeterminedError(_)));
                if !undetermined {
                    let _ = txn.rollback().await;
                }
                Err(f.into())
            }
        }
    }

    async fn sum_accounts(&self, accounts: u64) -> Result<BankSum, String> {
        let (client, _) = self.txn()?;
        let ts = client
            .current_timestamp()
            .await
            .map_err(|e| e.to_string())?;
        let mut snapshot = client.snapshot(
            ts,
            TransactionOptions::new_optimistic().drop_check(CheckLevel::None),
        );
        let (mut start, end) = accounts_range(accounts);
        let mut sum = BankSum::default();
        loop {
            let page: Vec<_> = snapshot
                .scan(start.clone()..end.clone(), SUM_PAGE)
                .await
                .map_err(|e| e.to_string())?
                .collect();
            for pair in &page {
                sum.accounts += 1;
                sum.total += u128::from(parse_balance(pair.value())?);
            }
            match page.last() {
                Some(last) if page.len() == SUM_PAGE as usize => {
                    let key: &Key = last.key();
                    start = Vec::<u8>::from(key.clone());
                    start.push(0);
                }
                _ => return Ok(sum),
            }
        }
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
        for mode in [None, Some(TxnMode::Optimistic)] {
            let started = std::time::Instant::now();
            let err = TikvBackend::connect(&[format!("127.0.0.1:{port}")], 1, mode, None, 1)
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

    #[test]
    fn txn_modes_map_to_client_options() {
        let base = |o: TransactionOptions| o.drop_check(CheckLevel::None);
        assert_eq!(
            transaction_options(TxnMode::Optimistic),
            base(TransactionOptions::new_optimistic())
        );
        assert_eq!(
            transaction_options(TxnMode::Pessimistic),
            base(TransactionOptions::new_pessimistic())
        );
        assert!(transaction_options(TxnMode::Pessimistic).is_pessimistic());
        assert_eq!(
            transaction_options(TxnMode::AsyncCommit),
            base(TransactionOptions::new_optimistic().use_async_commit())
        );
        assert_eq!(
            transaction_options(TxnMode::OnePc),
            base(TransactionOptions::new_optimistic().try_one_pc())
        );
        // Never the library's default of panicking when a transaction is dropped unfinished.
        for mode in [
            TxnMode::Optimistic,
            TxnMode::Pessimistic,
            TxnMode::AsyncCommit,
            TxnMode::OnePc,
        ] {
            assert_ne!(
                transaction_options(mode),
                transaction_options(mode).drop_check(CheckLevel::Panic)
            );
        }
    }

    #[test]
    fn conflicts_are_told_from_other_failures() {
        use tikv_client::{Error as E, ProtoKeyError};
        let key_error = |f: fn(&mut ProtoKeyError)| {
            let mut k = ProtoKeyError::default();
            f(&mut k);
            E::KeyError(Box::new(k))
        };
        let conflict = key_error(|k| k.conflict = Some(Default::default()));
        let locked = key_error(|k| k.locked = Some(Default::default()));
        let retryable = key_error(|k| k.retryable = "write conflict".into());
        let deadlock = key_error(|k| k.deadlock = Some(Default::default()));
        let abort = key_error(|k| k.abort = "bad".into());
        for e in [&conflict, &locked, &retryable, &deadlock] {
            assert!(is_conflict(e), "{e:?}");
        }
        assert!(!is_conflict(&abort));
        assert!(is_conflict(&E::ResolveLockError(vec![])));
        assert!(is_conflict(&E::PessimisticLockError {
            inner: Box::new(key_error(|k| k.conflict = Some(Default::default()))),
            success_keys: vec![],
        }));
        assert!(is_conflict(&E::MultipleKeyErrors(vec![
            key_error(|k| k.conflict = Some(Default::default())),
            key_error(|k| k.locked = Some(Default::default())),
        ])));
        assert!(is_conflict(&E::ExtractedErrors(vec![key_error(|k| {
            k.conflict = Some(Default::default())
        })])));
        // A mix with a real failure, or nothing at all, is not a plain conflict.
        assert!(!is_conflict(&E::MultipleKeyErrors(vec![
            key_error(|k| k.conflict = Some(Default::default())),
            E::StringError("store down".into()),
        ])));
        assert!(!is_conflict(&E::ExtractedErrors(vec![])));
        for e in [
            E::StringError("store down".into()),
            E::OnePcFailure,
            E::UndeterminedError(Box::new(E::StringError("timeout".into()))),
            E::Unimplemented,
        ] {
            assert!(!is_conflict(&e), "{e:?}");
        }
        // Classified for the runner.
        assert!(matches!(
            TxnError::from(Failure::from(key_error(
                |k| k.conflict = Some(Default::default())
            ))),
            TxnError::Conflict(_)
        ));
        assert!(matches!(
            TxnError::from(Failure::Data("account x is missing".into())),
            TxnError::Other(m) if m.contains("missing")
        ));
    }

    #[test]
    fn key_errors_are_described_in_one_short_line() {
        use tikv_client::{Error as E, ProtoKeyError};
        let retryable = ProtoKeyError {
            retryable: "write conflict on key 6b".into(),
            conflict: Some(Default::default()),
            ..Default::default()
        };
        let e = E::MultipleKeyErrors(vec![E::KeyError(Box::new(retryable.clone()))]);
        assert_eq!(describe(&e), "write conflict on key 6b");
        assert_eq!(
            TxnError::from(Failure::from(e)),
            TxnError::Conflict("write conflict on key 6b".into())
        );
        let bare = E::KeyError(Box::new(ProtoKeyError {
            conflict: Some(Default::default()),
            ..Default::default()
        }));
        assert_eq!(describe(&bare), "write conflict");
        let locked = E::KeyError(Box::new(ProtoKeyError {
            locked: Some(tikv_client::ProtoLockInfo {
                lock_version: 42,
                ..Default::default()
            }),
            ..Default::default()
        }));
        assert_eq!(describe(&locked), "key is locked by transaction 42");
        let two = E::ExtractedErrors(vec![bare, locked]);
        assert_eq!(describe(&two), "2 errors, the first: write conflict");
        let pessimistic = E::PessimisticLockError {
            inner: Box::new(E::KeyError(Box::new(ProtoKeyError {
                deadlock: Some(Default::default()),
                ..Default::default()
            }))),
            success_keys: vec![],
        };
        assert_eq!(describe(&pessimistic), "pessimistic lock: deadlock");
        // Anything else keeps the client's own text.
        assert_eq!(describe(&E::OnePcFailure), E::OnePcFailure.to_string());
    }
}
