//! `At`: a client of one store's `KvService` bound to one region context, with a method
//! per Raw* RPC the raw KV tests call.

use proto::kvrpcpb::*;
use proto::tikvpb::tikv_server::Tikv;
use server::{ApiVersion, StorageConfig};
use tonic::Request;

use super::{keys_of, Env, Service};

/// A client bound to one store and one region context.
pub struct At<'a> {
    pub svc: &'a Service,
    pub ctx: Context,
}

impl At<'_> {
    pub fn c(&self) -> Option<Context> {
        Some(self.ctx.clone())
    }

    pub async fn put(&self, key: &[u8], value: &[u8], ttl: u64) -> RawPutResponse {
        self.svc
            .raw_put(Request::new(RawPutRequest {
                context: self.c(),
                key: key.to_vec(),
                value: value.to_vec(),
                ttl,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn must_put(&self, key: &[u8], value: &[u8]) {
        let r = self.put(key, value, 0).await;
        assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
    }

    pub async fn get(&self, key: &[u8]) -> RawGetResponse {
        self.get_cf(key, "").await
    }

    pub async fn get_cf(&self, key: &[u8], cf: &str) -> RawGetResponse {
        self.svc
            .raw_get(Request::new(RawGetRequest {
                context: self.c(),
                key: key.to_vec(),
                cf: cf.to_string(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        let r = self.get(key).await;
        assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
        (!r.not_found).then_some(r.value)
    }

    pub async fn scan(
        &self,
        s: &[u8],
        e: &[u8],
        limit: u32,
        key_only: bool,
        reverse: bool,
    ) -> RawScanResponse {
        self.svc
            .raw_scan(Request::new(RawScanRequest {
                context: self.c(),
                start_key: s.to_vec(),
                end_key: e.to_vec(),
                limit,
                key_only,
                reverse,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn scan_keys(&self, s: &[u8], e: &[u8], limit: u32, reverse: bool) -> Vec<Vec<u8>> {
        let r = self.scan(s, e, limit, false, reverse).await;
        assert!(r.region_error.is_none(), "{r:?}");
        assert!(r.kvs.iter().all(|p| p.error.is_none()), "{r:?}");
        keys_of(&r.kvs)
    }

    pub async fn cas(&self, key: &[u8], previous: Option<&[u8]>, value: &[u8]) -> RawCasResponse {
        self.svc
            .raw_compare_and_swap(Request::new(RawCasRequest {
                context: self.c(),
                key: key.to_vec(),
                value: value.to_vec(),
                previous_not_exist: previous.is_none(),
                previous_value: previous.unwrap_or_default().to_vec(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn ttl(&self, key: &[u8]) -> RawGetKeyTtlResponse {
        self.svc
            .raw_get_key_ttl(Request::new(RawGetKeyTtlRequest {
                context: self.c(),
                key: key.to_vec(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn checksum(&self, ranges: Vec<KeyRange>) -> RawChecksumResponse {
        self.svc
            .raw_checksum(Request::new(RawChecksumRequest {
                context: self.c(),
                algorithm: ChecksumAlgorithm::Crc64Xor as i32,
                ranges,
            }))
            .await
            .unwrap()
            .into_inner()
    }
}

/// A client of the store leading the region of `key`.
pub async fn at<'a>(env: &'a Env, key: &[u8]) -> At<'a> {
    let (store, ctx) = env.leader(key).await;
    At {
        svc: env.svc(store),
        ctx,
    }
}

/// The storage configuration of an API V1 cluster.
pub fn v1() -> StorageConfig {
    StorageConfig::with_api_version(ApiVersion::V1)
}
