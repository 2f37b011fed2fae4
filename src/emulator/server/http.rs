//! A small, strict HTTP/1.1 server connection loop for `skr-emulator serve` (PROTOCOLS.md §8).
//!
//! The emulator writes its own request parser (instead of hyper) so that every malformed request
//! (bad request line, non-UTF-8 target, oversized head or body) gets the emulated service's own
//! status and error body, and so that faults can act on the raw byte stream (truncated and slow
//! bodies, dropped connections). Requests are read with a bounded head (32 KiB), a bounded body
//! (1 MiB, `Content-Length` only) and a 30 s idle timeout, so no client can hang a connection
//! forever. Keep-alive is honoured until the client asks to close or the server shuts down.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::faults::{Faults, Outcome};

/// Largest request head accepted (request line + headers).
pub const MAX_HEAD: usize = 32 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// How long a connection may stay silent before the server closes it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: String,
    /// The path part of the target, not percent-decoded.
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers (names lower-cased), in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Whether the client speaks HTTP/1.0 (closes after the response unless it asked for
    /// keep-alive).
    pub http10: bool,
}

impl Request {
    /// Whether the connection stays open after this request.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection");
        if self.http10 {
            conn.is_some_and(|v| v.eq_ignore_ascii_case("keep-alive"))
        } else {
            !conn.is_some_and(|v| v.eq_ignore_ascii_case("close"))
        }
    }

    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a query parameter.
    pub fn query_all(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Length and Connection are added when writing).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![(
                "Content-Type".to_string(),
                "application/json; charset=utf-8".to_string(),
            )],
            body: value.to_string().into_bytes(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Why a request could not be parsed; mapped to a status by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The request line or a header is not valid HTTP/1.1 (400).
    BadSyntax,
    /// The target is not UTF-8 or not a valid origin-form path (400).
    BadTarget,
    /// The head exceeds [`MAX_HEAD`] (431).
    HeadTooLarge,
    /// The body exceeds [`MAX_BODY`] (413).
    BodyTooLarge,
    /// Chunked or unknown transfer coding (411).
    LengthRequired,
}

impl Malformed {
    /// The HTTP status to answer.
    pub fn status(self) -> u16 {
        match self {
            Self::BadSyntax | Self::BadTarget => 400,
            Self::HeadTooLarge => 431,
            Self::BodyTooLarge => 413,
            Self::LengthRequired => 411,
        }
    }

    /// A sentence for the error body.
    pub fn describe(self) -> &'static str {
        match self {
            Self::BadSyntax => "The request is not valid HTTP/1.1",
            Self::BadTarget => "The request target is not a valid UTF-8 path and query",
            Self::HeadTooLarge => "The request headers are too large",
            Self::BodyTooLarge => "The request body is too large",
            Self::LengthRequired => "A Content-Length header is required",
        }
    }
}

/// What a service does with requests: route, answer, and answer malformed ones.
pub trait Service: Send + Sync + 'static {
    /// The endpoint name (for counters and faults) of a request.
    fn endpoint(&self, req: &Request) -> &'static str;
    /// The answer to a well-formed request.
    fn handle(&self, req: &Request) -> Response;
    /// The answer to a request that could not be parsed.
    fn malformed(&self, why: Malformed) -> Response;
    /// The endpoint name counted for malformed requests.
    fn malformed_endpoint(&self) -> &'static str;
    /// Whether every answer carries a fresh `x-ms-request-id` (the Azure services do; IMDS and
    /// the admin listener do not).
    fn request_ids(&self) -> bool {
        false
    }
}

/// A fresh request id: a random (version 4) UUID, as Azure's `x-ms-request-id`.
pub fn new_request_id() -> String {
    use rand_core::{OsRng, RngCore};
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    uuid::Builder::from_random_bytes(b)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// Gives the answer (as faulted) its `x-ms-request-id` when the service sends one, logs it and
/// keeps it in the admin request log.
fn stamp(
    (outcome, delay_ms): (Outcome, u64),
    endpoint: &'static str,
    ids: bool,
    faults: &Faults,
) -> Outcome {
    let add = |mut resp: Response| {
        let id = ids.then(new_request_id);
        if let Some(id) = &id {
            resp.headers
                .push(("x-ms-request-id".to_string(), id.clone()));
        }
        tracing::info!(
            endpoint,
            status = resp.status,
            request_id = id.as_deref().unwrap_or(""),
            delay_ms,
            "request"
        );
        faults.record(endpoint, resp.status, id, delay_ms);
        resp
    };
    match outcome {
        Outcome::Drop => {
            tracing::info!(endpoint, "request dropped (fault)");
            Outcome::Drop
        }
        Outcome::Send(r) => Outcome::Send(add(r)),
        Outcome::Truncate(r) => Outcome::Truncate(add(r)),
        Outcome::Slow(r, rate) => Outcome::Slow(add(r), rate),
    }
}

fn decode_percent(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
                let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a request head (without the final CRLFCRLF).
pub fn parse_head(head: &[u8]) -> Result<(Request, usize), Malformed> {
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().ok_or(Malformed::BadSyntax)?;
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed::BadSyntax);
    };
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(Malformed::BadSyntax);
    }
    if method.is_empty() || !method.iter().all(|b| b.is_ascii_uppercase()) {
        return Err(Malformed::BadSyntax);
    }
    let method = String::from_utf8_lossy(method).into_owned();
    let target = std::str::from_utf8(target).map_err(|_| Malformed::BadTarget)?;
    if !target.starts_with('/') || target.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(Malformed::BadTarget);
    }
    let (path, query_text) = target.split_once('?').unwrap_or((target, ""));
    let mut query = Vec::new();
    for pair in query_text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode_percent(k).ok_or(Malformed::BadTarget)?;
        let v = decode_percent(v).ok_or(Malformed::BadTarget)?;
        query.push((k, v));
    }
    let mut headers = Vec::new();
    let mut content_length = 0usize;
    for line in lines {
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or(Malformed::BadSyntax)?;
        let (name, value) = (line.get(..colon), line.get(colon + 1..));
        let (Some(name), Some(value)) = (name, value) else {
            return Err(Malformed::BadSyntax);
        };
        if name.is_empty() || name.iter().any(|b| !b.is_ascii_graphic()) {
            return Err(Malformed::BadSyntax);
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let value = String::from_utf8_lossy(value).trim().to_string();
        if name == "transfer-encoding" {
            return Err(Malformed::LengthRequired);
        }
        if name == "content-length" {
            content_length = value.parse().map_err(|_| Malformed::BadSyntax)?;
            if content_length > MAX_BODY {
                return Err(Malformed::BodyTooLarge);
            }
        }
        headers.push((name, value));
    }
    let req = Request {
        method,
        path: path.to_string(),
        query,
        headers,
        body: Vec::new(),
        http10: version == b"HTTP/1.0",
    };
    Ok((req, content_length))
}

/// Fuzz entry (`fuzz/fuzz_targets/fuzz_http_head.rs`): any bytes up to the first CRLFCRLF
/// through [`parse_head`]; never panics, and what it accepts keeps the parser's promises (an
/// origin-form path, a bounded body length, lower-case header names, an upper-case method).
pub fn fuzz_http_head(data: &[u8]) {
    let head = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data, |at| data.get(..at).unwrap_or_default());
    if let Ok((req, len)) = parse_head(head) {
        assert!(req.path.starts_with('/'));
        assert!(len <= MAX_BODY);
        assert!(!req.method.is_empty() && req.method.bytes().all(|b| b.is_ascii_uppercase()));
        assert!(req
            .headers
            .iter()
            .all(|(n, _)| !n.is_empty() && !n.bytes().any(|b| b.is_ascii_uppercase())));
        let _ = req.keep_alive();
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn head_bytes(resp: &Response, close: bool) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (n, v) in &resp.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Reads one request; `Ok(None)` on a clean close, idle timeout or shutdown.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<Option<Result<Request, Malformed>>> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if pos > MAX_HEAD {
                return Ok(Some(Err(Malformed::HeadTooLarge)));
            }
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Ok(Some(Err(Malformed::HeadTooLarge)));
        }
        let n = tokio::select! {
            r = tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk)) => match r {
                Ok(r) => r?,
                Err(_) => return Ok(None),
            },
            _ = shutdown.changed(), if buf.is_empty() => return Ok(None),
        };
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head: Vec<u8> = buf.drain(..head_end + 4).collect();
    let (mut req, len) = match parse_head(head.get(..head_end).unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => return Ok(Some(Err(e))),
    };
    while buf.len() < len {
        let n = match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(None),
        };
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    req.body = buf.drain(..len).collect();
    Ok(Some(Ok(req)))
}

/// Serves one connection until it closes, idles out or the server shuts down.
pub async fn serve_connection<S, V>(
    mut stream: S,
    service: Arc<V>,
    faults: Arc<Faults>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    V: Service + ?Sized,
{
    let mut buf = Vec::new();
    loop {
        let parsed = match read_request(&mut stream, &mut buf, &mut shutdown).await {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => return,
        };
        let (endpoint, resp, mut close) = match parsed {
            Err(why) => (service.malformed_endpoint(), service.malformed(why), true),
            Ok(req) => {
                let close = !req.keep_alive();
                (service.endpoint(&req), service.handle(&req), close)
            }
        };
        close |= *shutdown.borrow();
        let outcome = faults.apply(endpoint, resp).await;
        let outcome = stamp(outcome, endpoint, service.request_ids(), &faults);
        let written = match outcome {
            Outcome::Drop => return,
            Outcome::Send(resp) => write_all(&mut stream, &head_bytes(&resp, close), &resp.body)
                .await
                .map(|_| ()),
            Outcome::Truncate(resp) => {
                let cut = resp.body.len() / 2;
                let _ = write_all(
                    &mut stream,
                    &head_bytes(&resp, true),
                    resp.body.get(..cut).unwrap_or_default(),
                )
                .await;
                return;
            }
            Outcome::Slow(resp, bytes_per_s) => {
                write_slow(
                    &mut stream,
                    &head_bytes(&resp, close),
                    &resp.body,
                    bytes_per_s,
                )
                .await
            }
        };
        if written.is_err() || close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

async fn write_all<S: AsyncWrite + Unpin>(
    s: &mut S,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<()> {
    let mut all = Vec::with_capacity(head.len() + body.len());
    all.extend_from_slice(head);
    all.extend_from_slice(body);
    s.write_all(&all).await?;
    s.flush().await
}

async fn write_slow<S: AsyncWrite + Unpin>(
    s: &mut S,
    head: &[u8],
    body: &[u8],
    bytes_per_s: u64,
) -> std::io::Result<()> {
    s.write_all(head).await?;
    s.flush().await?;
    // Chunks of at most 1/10 s worth of bytes.
    let step = usize::try_from((bytes_per_s / 10).max(1)).unwrap_or(1);
    for piece in body.chunks(step) {
        s.write_all(piece).await?;
        s.flush().await?;
        let ms = (piece.len() as u64).saturating_mul(1000) / bytes_per_s.max(1);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query_and_headers() {
        let (req, len) = parse_head(
            b"GET /a/b?x=1&resource=https%3A%2F%2Fvault.azure.net HTTP/1.1\r\nMetadata: true\r\nContent-Length: 3",
        )
        .unwrap();
        assert_eq!(len, 3);
        assert_eq!(req.path, "/a/b");
        assert_eq!(req.query_all("resource"), vec!["https://vault.azure.net"]);
        assert_eq!(req.header("metadata"), Some("true"));
        assert!(req.keep_alive());
        let (req, _) = parse_head(b"GET / HTTP/1.0").unwrap();
        assert!(!req.keep_alive());
    }

    #[test]
    fn fuzz_entry_survives_mutations_of_real_requests() {
        for (seed, raw) in [
            (
                1u64,
                &b"POST /attest/SevSnpVm?api-version=2022-08-01 HTTP/1.1\r\nHost: sharedeus2.eus2.attest.azure.net\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"[..],
            ),
            (
                2,
                &b"POST /keys/disk/release?api-version=7.4 HTTP/1.1\r\nHost: v.vault.azure.net\r\nAuthorization: Bearer a.b.c\r\nContent-Type: application/json\r\nContent-Length: 18\r\nConnection: close\r\n\r\n{\"target\":\"a.b.c\"}"[..],
            ),
        ] {
            super::super::for_each_mutation(raw, seed, fuzz_http_head);
        }
    }

    #[test]
    fn random_heads_never_panic() {
        use rand_core::{OsRng, RngCore};
        let alphabet = b"GET /?=&%:\r\n HTTP/1.1 \xff\x00abc+";
        for _ in 0..20_000 {
            let len = (OsRng.next_u32() % 64) as usize;
            let head: Vec<u8> = (0..len)
                .map(|_| alphabet[(OsRng.next_u32() as usize) % alphabet.len()])
                .collect();
            let _ = parse_head(&head);
        }
    }

    #[test]
    fn rejects_malformed_heads() {
        assert_eq!(parse_head(b"GET /").unwrap_err(), Malformed::BadSyntax);
        assert_eq!(
            parse_head(b"GET /\xff HTTP/1.1").unwrap_err(),
            Malformed::BadTarget
        );
        assert_eq!(
            parse_head(b"GET /?a=%zz HTTP/1.1").unwrap_err(),
            Malformed::BadTarget
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked").unwrap_err(),
            Malformed::LengthRequired
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 99999999").unwrap_err(),
            Malformed::BodyTooLarge
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nno colon").unwrap_err(),
            Malformed::BadSyntax
        );
    }
}
