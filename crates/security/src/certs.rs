//! A certificate authority and certificates signed by it, generated with rcgen, for
//! `tessera playground --tls` and the tests. Not a PKI: keys are written unencrypted next
//! to the certificates.
//!
//! Every certificate gets `localhost`, `127.0.0.1` and `::1` as subject alternative names
//! (clients check the host they dial against them) and both the server and client
//! extended key usages, so one certificate serves a process on both sides of its
//! connections (a store is a server to clients and a client of the scheduler and of the
//! other stores).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::SecurityConfig;

/// Where [`generate`] wrote the files: `ca.pem`, and `<name>.pem` + `<name>-key.pem` for
/// every name.
#[derive(Clone, Debug)]
pub struct CertFiles {
    dir: PathBuf,
}

impl CertFiles {
    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The certificate whose common name is `name`.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// The private key of [`CertFiles::cert`].
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-key.pem"))
    }

    /// A `[security]` table using `name`'s certificate, allowing `allowed_cn`.
    pub fn config_for(&self, name: &str, allowed_cn: Vec<String>) -> SecurityConfig {
        SecurityConfig {
            ca_path: self.ca(),
            cert_path: self.cert(name),
            key_path: self.key(name),
            cert_allowed_cn: allowed_cn,
        }
    }
}

/// Creates `dir` if needed and writes a new CA and one certificate per name in `names`
/// (the name is its common name), each signed by that CA.
pub fn generate(dir: &Path, names: &[&str]) -> Result<CertFiles, String> {
    let err = |what: &str, e: rcgen::Error| format!("generating {what}: {e}");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let files = CertFiles {
        dir: dir.to_path_buf(),
    };

    let ca_key = KeyPair::generate().map_err(|e| err("the CA key", e))?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Tessera test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| err("the CA", e))?;
    write(&files.ca(), ca_cert.pem(), false)?;
    let issuer = Issuer::new(ca, ca_key);

    for name in names {
        let key = KeyPair::generate().map_err(|e| err(name, e))?;
        let mut params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .map_err(|e| err(name, e))?;
        params.distinguished_name.push(DnType::CommonName, *name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer).map_err(|e| err(name, e))?;
        write(&files.cert(name), cert.pem(), false)?;
        write(&files.key(name), key.serialize_pem(), true)?;
    }
    Ok(files)
}

fn write(path: &Path, pem: String, private: bool) -> Result<(), String> {
    std::fs::write(path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    Ok(())
}
