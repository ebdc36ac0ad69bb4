//! A small client of this crate's HTTP API ([`crate::http`], [`crate::admin_http`]): one
//! HTTP/1.1 request per connection (`Connection: close`), JSON answers. `tessera ctl`, the
//! playground and the tests use it; it needs nothing beyond tokio.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the whole answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `method path` with a JSON `body` to the scheduler at `addr` (host:port) and
/// returns the HTTP status and the body: parsed JSON, or the text as a JSON string when it
/// is not JSON. `Err` only when no HTTP answer came (connect, send or read failed, or timed
/// out).
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, Value), String> {
    request_tls(addr, None, method, path, body).await
}

/// [`request`] over TLS when `tls` is given (a scheduler with a `[security]` table serves
/// its HTTP API only over TLS, to clients with a certificate its CA signed).
pub async fn request_tls(
    addr: &str,
    tls: Option<&security::Tls>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, Value), String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to the scheduler at {addr}: timed out"))?
        .map_err(|e| format!("connecting to the scheduler at {addr}: {e}"))?;
    match tls {
        None => exchange(tcp, addr, false, method, path, body).await,
        Some(tls) => {
            // The certificate must name the host as dialled ("127.0.0.1", "localhost").
            let host = addr
                .rsplit_once(':')
                .map_or(addr, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(host, tcp))
                .await
                .map_err(|_| format!("TLS handshake with the scheduler at {addr}: timed out"))?
                .map_err(|e| {
                    format!(
                        "TLS handshake with the scheduler at {addr}: {}",
                        security::error_chain(&e)
                    )
                })?;
            exchange(stream, addr, true, method, path, body).await
        }
    }
}

async fn exchange<S>(
    mut s: S,
    addr: &str,
    tls: bool,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, Value), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(ANSWER_TIMEOUT, s.read_to_end(&mut raw))
        .await
        .map_err(|_| {
            format!(
                "no answer from {addr} within {} s",
                ANSWER_TIMEOUT.as_secs()
            )
        })?;
    match read {
        Ok(_) => {}
        // Over TLS a server may close the socket after the answer without a close_notify;
        // the answer is complete all the same (`Connection: close` delimits it).
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(format!("reading from {addr}: {e}")),
    }
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            let hint = if tls {
                ""
            } else {
                " (a scheduler with a [security] table answers only over TLS, to a client \
                 with a certificate its CA signed: `tessera ctl --config <file>`)"
            };
            format!("{addr} did not answer HTTP{hint}")
        })?;
    let body = text
        .find("\r\n\r\n")
        .map(|i| &text[i + 4..])
        .unwrap_or_default();
    let body = dechunk(body);
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Ok((status, v))
}

/// Undoes HTTP/1.1 chunked transfer encoding when the body uses it.
fn dechunk(body: &str) -> String {
    let first = body.lines().next().unwrap_or("");
    if first.is_empty() || !first.chars().all(|c| c.is_ascii_hexdigit()) || body.starts_with('{') {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some(nl) = rest.find("\r\n") {
        let Ok(len) = usize::from_str_radix(rest[..nl].trim(), 16) else {
            break;
        };
        if len == 0 {
            break;
        }
        let start = nl + 2;
        let Some(chunk) = rest.get(start..start + len) else {
            break;
        };
        out.push_str(chunk);
        rest = rest.get(start + len + 2..).unwrap_or("");
    }
    out
}
