//! The `keyspacepb.Keyspace` gRPC service. Tessera has no keyspaces yet, so it knows one:
//! `DEFAULT`, the keyspace clients look up when they are not configured for another.

use proto::keyspacepb::{self, keyspace_server::Keyspace};
use proto::pdpb::ErrorType;
use tonic::{Request, Response, Status};

use crate::convert::{check_cluster, response_header, ApiError};
use crate::service::error_response;

/// Name of the only keyspace.
pub const DEFAULT_KEYSPACE_NAME: &str = "DEFAULT";

/// The `Keyspace` service: one keyspace, `DEFAULT` (id 0, enabled), which is what clients
/// not configured for keyspaces look up.
#[derive(Clone)]
pub struct KeyspaceService {
    cluster_id: u64,
    /// When the service started (Unix s), reported as the keyspace's creation time.
    created_at: i64,
}

impl KeyspaceService {
    /// The service for cluster `cluster_id`.
    pub fn new(cluster_id: u64) -> KeyspaceService {
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        KeyspaceService {
            cluster_id,
            created_at,
        }
    }
}

#[tonic::async_trait]
impl Keyspace for KeyspaceService {
    async fn load_keyspace(
        &self,
        req: Request<keyspacepb::LoadKeyspaceRequest>,
    ) -> Result<Response<keyspacepb::LoadKeyspaceResponse>, Status> {
        let req = req.into_inner();
        let result = check_cluster(self.cluster_id, req.header.as_ref()).and_then(|()| {
            if req.name == DEFAULT_KEYSPACE_NAME {
                Ok(keyspacepb::KeyspaceMeta {
                    id: 0,
                    name: DEFAULT_KEYSPACE_NAME.to_string(),
                    state: keyspacepb::KeyspaceState::Enabled as i32,
                    created_at: self.created_at,
                    state_changed_at: self.created_at,
                    config: Default::default(),
                })
            } else {
                Err(ApiError::new(
                    ErrorType::EntryNotFound,
                    format!("keyspace {:?} not found", req.name),
                ))
            }
        });
        let resp = match result {
            Ok(meta) => keyspacepb::LoadKeyspaceResponse {
                header: Some(response_header(self.cluster_id, None)),
                keyspace: Some(meta),
            },
            Err(e) => error_response(self.cluster_id, &e),
        };
        Ok(Response::new(resp))
    }
}
