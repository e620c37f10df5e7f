//! A minimal HTTP/1.0 GET for configs announced as `http://` URLs (the
//! upstream amqp monitor's "AMQP over HTTP"). No TLS, no redirects, no
//! chunked encoding (HTTP/1.0 servers send the body until close); the body
//! is bounded so a hostile server cannot exhaust memory.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response header accepted, in bytes.
const MAX_HEADER: usize = 16 * 1024;

/// Why a config could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http://HOST[:PORT]/PATH`.
    #[error("config URL {0:?} is not of the form http://HOST[:PORT]/PATH")]
    BadUrl(String),
    /// Connecting, sending or reading failed.
    #[error("fetching config URL {url}: {error}")]
    Io {
        /// The URL.
        url: String,
        /// What failed.
        error: std::io::Error,
    },
    /// The server did not answer within the timeout.
    #[error("fetching config URL {0}: no complete answer within the timeout")]
    Timeout(String),
    /// The answer is not HTTP.
    #[error("fetching config URL {0}: the answer is not an HTTP response")]
    BadResponse(String),
    /// The body is larger than the limit.
    #[error("fetching config URL {url}: the body is larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
}

/// An `http://` URL split into what the request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `HOST:PORT` to connect to (IPv6 hosts keep their brackets).
    pub authority: String,
    /// The `Host:` header value.
    pub host: String,
    /// Path and query, starting with `/`.
    pub target: String,
    /// The last segment of the path, without query or fragment.
    pub last_segment: String,
}

impl Url {
    /// Parses `http://HOST[:PORT][/PATH][?QUERY]`.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = || HttpError::BadUrl(url.chars().take(256).collect());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        if rest.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad());
        }
        let rest = rest.split('#').next().unwrap_or("");
        let (host, target) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if host.is_empty() || host.contains('@') {
            return Err(bad());
        }
        let has_port = match host.rfind(']') {
            Some(end) => host[end..].contains(':'),
            None => host.contains(':'),
        };
        let authority = if has_port { host.to_owned() } else { format!("{host}:80") };
        let target = if target.starts_with('/') { target.to_owned() } else { format!("/{target}") };
        let path = target.split('?').next().unwrap_or("");
        let last_segment = path.rsplit('/').next().unwrap_or("").to_owned();
        Ok(Self { authority, host: host.to_owned(), target, last_segment })
    }
}

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (200, 404, …).
    pub status: u16,
    /// The body, at most the limit given to [`get`].
    pub body: Vec<u8>,
}

/// GETs `url`, giving up after `timeout`; bodies over `limit` bytes are refused.
pub async fn get(url: &Url, raw: &str, limit: usize, timeout: Duration) -> Result<Response, HttpError> {
    match tokio::time::timeout(timeout, fetch(url, raw, limit)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout(raw.to_owned())),
    }
}

async fn fetch(url: &Url, raw: &str, limit: usize) -> Result<Response, HttpError> {
    let io = |error| HttpError::Io { url: raw.to_owned(), error };
    let mut stream = TcpStream::connect(&url.authority).await.map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: emperor\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.target, url.host
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_HEADER + limit {
            return Err(HttpError::TooLarge { url: raw.to_owned(), limit });
        }
    }
    parse_response(&buf, limit).map_err(|e| match e {
        ParseError::Bad => HttpError::BadResponse(raw.to_owned()),
        ParseError::TooLarge => HttpError::TooLarge { url: raw.to_owned(), limit },
    })
}

enum ParseError {
    Bad,
    TooLarge,
}

/// Splits a complete response into status and body.
fn parse_response(buf: &[u8], limit: usize) -> Result<Response, ParseError> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or(ParseError::Bad)?;
    if end > MAX_HEADER {
        return Err(ParseError::Bad);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ParseError::Bad)?;
    let status_line = head.lines().next().ok_or(ParseError::Bad)?;
    let mut words = status_line.split_whitespace();
    if !words.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(ParseError::Bad);
    }
    let status: u16 = words.next().and_then(|s| s.parse().ok()).ok_or(ParseError::Bad)?;
    let mut body = &buf[end + 4..];
    let length = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
    });
    if let Some(len) = length {
        body = &body[..len.min(body.len())];
    }
    if body.len() > limit {
        return Err(ParseError::TooLarge);
    }
    Ok(Response { status, body: body.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://example.com/confs/trac.ini").unwrap();
        assert_eq!((u.authority.as_str(), u.target.as_str()), ("example.com:80", "/confs/trac.ini"));
        assert_eq!(u.last_segment, "trac.ini");
        let u = Url::parse("http://127.0.0.1:8080/a/b.yaml?x=1#frag").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.target.as_str(), u.last_segment.as_str()),
            ("127.0.0.1:8080", "/a/b.yaml?x=1", "b.yaml")
        );
        assert_eq!(Url::parse("http://[::1]/c.ini").unwrap().authority, "[::1]:80");
        assert_eq!(Url::parse("http://h").unwrap().last_segment, "");
        for bad in ["https://x/a.ini", "http:///a.ini", "http://u@h/a.ini", "http://h/a b.ini", "http://h/\r\n.ini"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabcdef", 10).ok().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"abc".as_slice()));
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n", 10).ok().unwrap();
        assert_eq!(r.status, 404);
        assert!(matches!(parse_response(b"HTTP/1.0 200 OK\r\n\r\n0123456789a", 10), Err(ParseError::TooLarge)));
        assert!(matches!(parse_response(b"garbage", 10), Err(ParseError::Bad)));
    }
}
