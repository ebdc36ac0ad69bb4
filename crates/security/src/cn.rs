//! The subject common name of a DER certificate, for the `cert_allowed_cn` check.

use tokio_rustls::rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The first common name (OID 2.5.4.3) in `cert`'s subject, if the certificate parses and
/// has one as a string.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
