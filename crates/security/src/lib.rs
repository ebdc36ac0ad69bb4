//! Mutual TLS for every Tessera connection: client → scheduler, client → store,
//! store → store and store → scheduler, and the scheduler's HTTP API.
//!
//! # What it owns
//! - [`SecurityConfig`], the `[security]` table of the configuration file: a CA, this
//!   process's certificate and key (PEM files), and an optional allow-list of certificate
//!   common names (TiKV's `cert-allowed-cn`). Empty paths mean plaintext, the default.
//! - [`Tls`], the loaded material every side builds its connections from: tonic's
//!   [`ServerTlsConfig`] (a client certificate signed by the CA is required) and
//!   [`ClientTlsConfig`] (the server's certificate must be signed by the CA and name the
//!   host dialled; ours present the same certificate as clients), the common-name check
//!   servers run on every request ([`Tls::check_peer`], [`interceptor`],
//!   [`Tls::check_extensions`]), and a TLS connector for the scheduler's HTTP/1.1 client.
//! - [`certs`]: a CA and certificates generated with rcgen, for `tessera playground --tls`
//!   and the tests.
//!
//! # Who is refused where
//! A peer without a certificate, or with one another CA signed, fails the TLS handshake
//! (rustls checks the chain; the connection never carries a request). A peer whose
//! certificate is valid but whose common name is not on a non-empty allow-list completes
//! the handshake and gets `PermissionDenied` on every call (HTTP 403 on the HTTP API), as
//! TiKV answers it.

pub mod certs;
mod cn;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

pub use cn::common_name;

/// The `[security]` table: where the PEM files are and which peers are allowed. Keys are
/// snake_case like the rest of the file; TiKV's kebab-case spellings (`ca-path`, ...) are
/// accepted too, so a TiKV `[security]` table can be pasted as is.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// The CA certificate(s) (PEM) that signed every certificate of the cluster and its
    /// clients.
    #[serde(alias = "ca-path")]
    pub ca_path: PathBuf,
    /// This process's certificate (PEM), presented as a server and as a client.
    #[serde(alias = "cert-path")]
    pub cert_path: PathBuf,
    /// The private key of `cert_path` (PEM, PKCS#8, PKCS#1 or SEC1).
    #[serde(alias = "key-path")]
    pub key_path: PathBuf,
    /// Common names a peer's certificate may carry; empty: any certificate the CA signed.
    #[serde(alias = "cert-allowed-cn")]
    pub cert_allowed_cn: Vec<String>,
}

impl SecurityConfig {
    /// True when any path is set, i.e. TLS is asked for (validation then requires all).
    pub fn is_enabled(&self) -> bool {
        [&self.ca_path, &self.cert_path, &self.key_path]
            .iter()
            .any(|p| !p.as_os_str().is_empty())
    }

    /// Checks the settings and the files (readable, parseable, usable by rustls); the
    /// message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.load().map(|_| ())
    }

    /// The loaded certificates, or `None` for plaintext. Fails with a message naming the
    /// field when only some paths are set, a file cannot be read or holds no usable PEM.
    pub fn load(&self) -> Result<Option<Tls>, String> {
        if !self.is_enabled() {
            if !self.cert_allowed_cn.is_empty() {
                return Err(
                    "security.cert_allowed_cn needs TLS: set ca_path, cert_path and key_path"
                        .into(),
                );
            }
            return Ok(None);
        }
        let missing: Vec<&str> = [
            ("ca_path", &self.ca_path),
            ("cert_path", &self.cert_path),
            ("key_path", &self.key_path),
        ]
        .iter()
        .filter(|(_, p)| p.as_os_str().is_empty())
        .map(|(n, _)| *n)
        .collect();
        if !missing.is_empty() {
            return Err(format!(
                "security: ca_path, cert_path and key_path go together; {} missing",
                missing
                    .iter()
                    .map(|n| format!("security.{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(bad) = self.cert_allowed_cn.iter().find(|cn| cn.trim().is_empty()) {
            return Err(format!(
                "security.cert_allowed_cn holds an empty name ({bad:?})"
            ));
        }
        let ca = read("ca_path", &self.ca_path)?;
        let cert = read("cert_path", &self.cert_path)?;
        let key = read("key_path", &self.key_path)?;
        Tls::from_pem(ca, cert, key, self.cert_allowed_cn.iter().cloned()).map(Some)
    }
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("security.{field} {}: {e}", path.display()))
}

/// How long a server waits for a client to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Loaded TLS material, cheap to clone. Its `Debug` shows no key.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
    allowed_cn: HashSet<String>,
    /// For the scheduler's HTTP/1.1 client, which does not go through tonic.
    http: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("allowed_cn", &self.inner.allowed_cn)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Builds the material from PEM bytes: `ca` the trusted CA certificate(s), `cert` and
    /// `key` this side's identity, `allowed_cn` the allow-list (empty: any). Everything is
    /// parsed here, so a bad file is reported at startup rather than at the first
    /// connection.
    pub fn from_pem(
        ca: Vec<u8>,
        cert: Vec<u8>,
        key: Vec<u8>,
        allowed_cn: impl IntoIterator<Item = String>,
    ) -> Result<Tls, String> {
        let ca_certs = certificates("ca_path", &ca)?;
        let chain = certificates("cert_path", &cert)?;
        let private = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| format!("security.key_path: no private key in PEM ({e})"))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in ca_certs {
            roots
                .add(c)
                .map_err(|e| format!("security.ca_path: unusable CA certificate: {e}"))?;
        }
        // The process-wide provider, as tonic uses: ring, the only one compiled in.
        let http = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, private)
            .map_err(|e| format!("security.cert_path/key_path: {e}"))?;
        let tls = Tls {
            inner: Arc::new(Inner {
                ca,
                cert,
                key,
                allowed_cn: allowed_cn.into_iter().collect(),
                http: tokio_rustls::TlsConnector::from(Arc::new(http)),
            }),
        };
        // Let tonic parse it too (identity and client roots), once, so its errors surface
        // now with the field names rather than when the server starts.
        tonic::transport::Server::builder()
            .tls_config(tls.server_config())
            .map_err(|e| format!("security.cert_path/key_path: {}", error_chain(&e)))?;
        Ok(tls)
    }

    /// The server side: our certificate, and a client certificate signed by the CA is
    /// required on every connection. A handshake not finished within
    /// [`HANDSHAKE_TIMEOUT`] is dropped, so connections that never speak do not pile up.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.inner.ca))
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The client side: trusts only the CA, presents our certificate. The server's name is
    /// checked against the host in the URL dialled (certificates need that host, e.g.
    /// `127.0.0.1` or `localhost`, among their subject alternative names).
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.inner.ca))
            .identity(self.identity())
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.inner.cert, &self.inner.key)
    }

    /// The allow-list of common names (empty: any certificate the CA signed).
    pub fn allowed_cn(&self) -> &HashSet<String> {
        &self.inner.allowed_cn
    }

    /// The common-name check: `Ok` when the allow-list is empty or the peer's leaf
    /// certificate carries a listed common name. The handshake already verified the
    /// chain, so only the name is looked at here.
    pub fn check_peer(&self, certs: Option<&[CertificateDer<'_>]>) -> Result<(), tonic::Status> {
        if self.inner.allowed_cn.is_empty() {
            return Ok(());
        }
        let Some(leaf) = certs.and_then(|c| c.first()) else {
            return Err(tonic::Status::unauthenticated(
                "no client certificate on this connection",
            ));
        };
        match common_name(leaf) {
            Some(cn) if self.inner.allowed_cn.contains(&cn) => Ok(()),
            Some(cn) => Err(tonic::Status::permission_denied(format!(
                "certificate common name {cn:?} is not in cert_allowed_cn"
            ))),
            None => Err(tonic::Status::permission_denied(
                "the client certificate has no common name (cert_allowed_cn is set)",
            )),
        }
    }

    /// [`Tls::check_peer`] on a request's extensions, where tonic's server puts the
    /// connection's TLS details (for layers that see `http::Request`s, such as the
    /// scheduler's HTTP routes).
    pub fn check_extensions(&self, extensions: &tonic::Extensions) -> Result<(), tonic::Status> {
        let certs = extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs());
        self.check_peer(certs.as_deref().map(Vec::as_slice))
    }

    /// Opens TLS over `stream` to `host` (a name or IP address the server's certificate
    /// carries), presenting our certificate. For plain HTTP/1.1 clients: no ALPN is
    /// offered, so the server falls back to HTTP/1.1.
    pub async fn connect<IO>(
        &self,
        host: &str,
        stream: IO,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host:?}: {e}"))
        })?;
        self.inner.http.connect(name, stream).await
    }
}

/// A tonic interceptor running [`Tls::check_peer`] on every call when `tls` is given, and
/// letting everything through when not (plaintext), so a server can install it either way
/// (through `tonic::service::InterceptorLayer`).
pub fn interceptor(
    tls: Option<Tls>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>
       + Clone
       + Send
       + Sync
       + 'static {
    move |req: tonic::Request<()>| {
        if let Some(tls) = &tls {
            let certs = req.peer_certs();
            tls.check_peer(certs.as_deref().map(Vec::as_slice))?;
        }
        Ok(req)
    }
}

/// `addr` (`host:port`, with or without a scheme) as a URL with the scheme the connection
/// needs: `https://` with TLS, `http://` without.
pub fn url(addr: &str, tls: Option<&Tls>) -> String {
    let bare = addr
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    if tls.is_some() {
        format!("https://{bare}")
    } else {
        format!("http://{bare}")
    }
}

fn certificates(field: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("security.{field}: bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("security.{field}: no certificate in the PEM file"));
    }
    Ok(certs)
}

/// An error with its causes: tonic and rustls put the useful part in the sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_plaintext_and_partial_or_bad_settings_are_named() {
        let none = SecurityConfig::default();
        assert!(!none.is_enabled());
        assert!(none.load().unwrap().is_none());

        let only_ca = SecurityConfig {
            ca_path: "/nonexistent/ca.pem".into(),
            ..Default::default()
        };
        let e = only_ca.validate().unwrap_err();
        assert!(
            e.contains("security.cert_path") && e.contains("security.key_path"),
            "{e}"
        );

        let cn_only = SecurityConfig {
            cert_allowed_cn: vec!["a".into()],
            ..Default::default()
        };
        assert!(cn_only.validate().unwrap_err().contains("cert_allowed_cn"));

        let dir = tempfile::tempdir().unwrap();
        let files = certs::generate(dir.path(), &["tessera-server", "tessera-client"]).unwrap();
        let mut cfg = files.config_for("tessera-server", vec![]);
        cfg.validate().unwrap();
        cfg.key_path = dir.path().join("missing.pem");
        let e = cfg.validate().unwrap_err();
        assert!(
            e.contains("security.key_path") && e.contains("missing.pem"),
            "{e}"
        );
        // A certificate where the key should be.
        cfg.key_path = cfg.cert_path.clone();
        let e = cfg.validate().unwrap_err();
        assert!(e.contains("security.key_path"), "{e}");
        cfg.key_path = files.key("tessera-server");
        cfg.ca_path = files.key("tessera-client");
        let e = cfg.validate().unwrap_err();
        assert!(e.contains("security.ca_path"), "{e}");
    }

    #[test]
    fn tikv_spellings_are_accepted_and_typos_refused() {
        let cfg: SecurityConfig = toml::from_str(
            "ca-path = \"ca.pem\"\ncert-path = \"c.pem\"\nkey-path = \"k.pem\"\ncert-allowed-cn = [\"x\"]",
        )
        .unwrap();
        assert_eq!(cfg.ca_path, PathBuf::from("ca.pem"));
        assert_eq!(cfg.cert_allowed_cn, vec!["x".to_string()]);
        let e = toml::from_str::<SecurityConfig>("ca_pth = \"x\"").unwrap_err();
        assert!(e.to_string().contains("ca_pth"), "{e}");
    }

    #[test]
    fn the_allow_list_checks_the_leaf_common_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = certs::generate(dir.path(), &["tessera-server", "intruder"]).unwrap();
        let tls = files
            .config_for("tessera-server", vec!["tessera-server".into()])
            .load()
            .unwrap()
            .unwrap();
        let der = |name: &str| {
            let pem = std::fs::read(files.cert(name)).unwrap();
            CertificateDer::from_pem_slice(&pem).unwrap()
        };
        assert!(tls.check_peer(Some(&[der("tessera-server")])).is_ok());
        let refused = tls.check_peer(Some(&[der("intruder")])).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(refused.message().contains("intruder"), "{refused:?}");
        assert_eq!(
            tls.check_peer(None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        // An empty list lets any certificate through (the CA already vouched for it).
        let open = files
            .config_for("tessera-server", vec![])
            .load()
            .unwrap()
            .unwrap();
        assert!(open.check_peer(Some(&[der("intruder")])).is_ok());
    }

    #[test]
    fn urls_get_the_scheme_the_connection_needs() {
        let dir = tempfile::tempdir().unwrap();
        let files = certs::generate(dir.path(), &["s"]).unwrap();
        let tls = files.config_for("s", vec![]).load().unwrap().unwrap();
        assert_eq!(url("127.0.0.1:2379", None), "http://127.0.0.1:2379");
        assert_eq!(
            url("http://127.0.0.1:2379", Some(&tls)),
            "https://127.0.0.1:2379"
        );
        assert_eq!(url("https://h:1", None), "http://h:1");
    }
}
