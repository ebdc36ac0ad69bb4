//! Mutual TLS: a scheduler and three stores with a `[security]` table (certificates from a
//! CA generated for the test, `cert_allowed_cn` set), the official `tikv-client` 0.4 with
//! its security config, and the clients that must be refused.
//!
//! That the cluster forms at all (three replicas of the first region, read through the
//! scheduler's HTTP API over TLS) shows store → scheduler and store → store traffic over
//! TLS: the stores have no other way to talk.

mod common;

use std::path::Path;
use std::time::Duration;

use common::TestCluster;
use security::certs::CertFiles;
use tikv_client::{Config, RawClient, TransactionClient};

const SERVER: &str = "tessera-server";
const CLIENT: &str = "tessera-client";
/// Signed by the cluster's CA but not on the allow-list.
const INTRUDER: &str = "intruder";

/// How long a refused client may take to give up; refusals come at the first exchange,
/// so this only bounds a client that would retry forever.
const REFUSAL_LIMIT: Duration = Duration::from_secs(60);

fn tikv_config(files: &CertFiles, ca: &Path, name: &str) -> Config {
    Config::default()
        .with_security(ca, files.cert(name), files.key(name))
        .with_timeout(Duration::from_secs(5))
}

/// A raw client that must not get through: connecting (which asks the scheduler for its
/// members and cluster id) fails, or if it connects, a put fails.
async fn assert_refused(pd: &str, config: Config, who: &str) {
    let attempt = async {
        let client = RawClient::new_with_config(vec![pd.to_string()], config).await?;
        client.put(b"refused".to_vec(), b"x".to_vec()).await
    };
    match tokio::time::timeout(REFUSAL_LIMIT, attempt).await {
        Ok(Err(e)) => eprintln!("{who}: refused as expected: {e}"),
        Ok(Ok(())) => panic!("{who}: a put went through"),
        Err(_) => panic!("{who}: neither refused nor served within {REFUSAL_LIMIT:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_serves_tikv_client_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let files =
        security::certs::generate(&dir.path().join("tls"), &[SERVER, CLIENT, INTRUDER]).unwrap();
    let other_ca = security::certs::generate(&dir.path().join("other-ca"), &[CLIENT]).unwrap();
    let server_security = files.config_for(SERVER, vec![SERVER.into(), CLIENT.into()]);
    let cluster = TestCluster::start_with_security(dir.path(), 1, server_security).await;
    let pd = cluster.pd_addr();

    // The official client with its security config: raw and transactional.
    let raw =
        RawClient::new_with_config(vec![pd.clone()], tikv_config(&files, &files.ca(), CLIENT))
            .await
            .unwrap();
    raw.put(b"tls/raw".to_vec(), b"secret".to_vec())
        .await
        .unwrap();
    assert_eq!(
        raw.get(b"tls/raw".to_vec()).await.unwrap(),
        Some(b"secret".to_vec())
    );
    // Store to store: the other replicas were created empty and filled by a snapshot and
    // raft messages over TLS. Move the leadership to one of them and read through it.
    let regions = cluster.regions().await;
    let region = &regions["regions"][0];
    let leader = region["leader"]["store_id"].as_u64().unwrap();
    let target = region["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["store_id"].as_u64())
        .find(|s| *s != leader)
        .unwrap();
    let region_id = region["id"].as_u64().unwrap();
    cluster.wait_for_leader(region_id, target).await;
    assert_eq!(
        raw.get(b"tls/raw".to_vec()).await.unwrap(),
        Some(b"secret".to_vec())
    );
    let txn_client = TransactionClient::new_with_config(
        vec![pd.clone()],
        tikv_config(&files, &files.ca(), CLIENT),
    )
    .await
    .unwrap();
    let mut txn = txn_client.begin_optimistic().await.unwrap();
    txn.put(b"tls/txn".to_vec(), b"committed".to_vec())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let mut read = txn_client.begin_optimistic().await.unwrap();
    assert_eq!(
        read.get(b"tls/txn".to_vec()).await.unwrap(),
        Some(b"committed".to_vec())
    );
    read.rollback().await.unwrap();

    // A client certificate another CA signed: the handshake fails.
    assert_refused(&pd, tikv_config(&other_ca, &files.ca(), CLIENT), "other CA").await;
    // The right CA, a common name not on the allow-list: PermissionDenied.
    assert_refused(
        &pd,
        tikv_config(&files, &files.ca(), INTRUDER),
        "unlisted CN",
    )
    .await;
    // No TLS at all.
    let plaintext = Config::default().with_timeout(Duration::from_secs(5));
    assert_refused(&pd, plaintext, "plaintext").await;

    // What a client sees call by call: the scheduler's and a store's gRPC services (a
    // client may dial stores directly) admit the allowed name, answer PermissionDenied to
    // the unlisted one, and never get a call from another CA's certificate.
    let store = cluster.node(0).addr().to_string();
    let client_tls = files.config_for(CLIENT, vec![]).load().unwrap().unwrap();
    let intruder_tls = files.config_for(INTRUDER, vec![]).load().unwrap().unwrap();
    let stranger_tls = other_ca.config_for(CLIENT, vec![]).load().unwrap().unwrap();
    for (what, call) in [
        ("scheduler", Call::PdMembers(&pd)),
        ("store", Call::StoreRawGet(&store)),
    ] {
        let status = call.run(&client_tls).await;
        assert!(
            status.is_ok(),
            "{what} refused an allowed client: {status:?}"
        );
        let status = call.run(&intruder_tls).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::PermissionDenied,
            "{what}: {status:?}"
        );
        assert!(status.message().contains(INTRUDER), "{what}: {status:?}");
        let status = call.run(&stranger_tls).await.unwrap_err();
        assert_ne!(
            status.code(),
            tonic::Code::PermissionDenied,
            "{what}: {status:?}"
        );
    }

    // The scheduler's HTTP API is behind the same TLS.
    let (status, body) =
        pd_server::http_client::request_tls(&pd, Some(&client_tls), "GET", "/pd/api/v1/stores", "")
            .await
            .unwrap();
    assert_eq!((status, body["count"].as_u64()), (200, Some(3)), "{body}");
    let (status, body) = pd_server::http_client::request_tls(
        &pd,
        Some(&intruder_tls),
        "GET",
        "/pd/api/v1/stores",
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains(INTRUDER), "{body}");
    let refused = pd_server::http_client::request_tls(
        &pd,
        Some(&stranger_tls),
        "GET",
        "/pd/api/v1/stores",
        "",
    )
    .await;
    assert!(
        refused.is_err(),
        "another CA's certificate got an answer: {refused:?}"
    );
    let plaintext = pd_server::http_client::request(&pd, "GET", "/pd/api/v1/stores", "").await;
    assert!(
        !matches!(plaintext, Ok((200, _))),
        "a plaintext request got an answer: {plaintext:?}"
    );

    cluster.stop().await;
}

/// One gRPC call made with a chosen certificate.
#[derive(Clone, Copy)]
enum Call<'a> {
    /// GetMembers to the scheduler at this address.
    PdMembers(&'a str),
    /// RawGet to the store at this address (no region context: an admitted call is
    /// answered, with a region error in the body; only a refused one fails as a call).
    StoreRawGet(&'a str),
}

impl Call<'_> {
    async fn run(self, tls: &security::Tls) -> Result<(), tonic::Status> {
        let addr = match self {
            Call::PdMembers(a) | Call::StoreRawGet(a) => a,
        };
        let channel = tonic::transport::Endpoint::from_shared(security::url(addr, Some(tls)))
            .unwrap()
            .tls_config(tls.client_config())
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(security::error_chain(&e)))?;
        let call = async {
            match self {
                Call::PdMembers(_) => proto::pdpb::pd_client::PdClient::new(channel)
                    .get_members(proto::pdpb::GetMembersRequest::default())
                    .await
                    .map(|_| ()),
                Call::StoreRawGet(_) => proto::tikvpb::tikv_client::TikvClient::new(channel)
                    .raw_get(proto::kvrpcpb::RawGetRequest {
                        key: b"tls/raw".to_vec(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
            }
        };
        tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("the call timed out"))?
    }
}
