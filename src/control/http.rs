//! A deliberately small HTTP/1.1 server side: one request per connection,
//! bounded head and body, anything unexpected answered 400.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest request line plus headers.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Most headers in a request.
const MAX_HEADERS: usize = 64;
/// Longest body (commands carry none).
const MAX_BODY: usize = 4 * 1024;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// `GET`, `POST`, ...
    pub(crate) method: String,
    /// The target, from `/` on (query included).
    pub(crate) target: String,
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// Not HTTP/1.x as this server speaks it.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// Over a size limit.
    #[error("request too large")]
    TooLarge,
    /// The connection failed or closed early.
    #[error("reading the request: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one request (head and body) from `stream`.
pub(crate) async fn read_request(stream: &mut (impl AsyncRead + Unpin)) -> Result<Request, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        if buf.len() >= MAX_HEAD {
            return Err(HttpError::TooLarge);
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HttpError::Malformed("connection closed inside the head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if end > MAX_HEAD {
        return Err(HttpError::TooLarge);
    }
    let (request, length) = parse_head(&buf[..end])?;
    let mut have = buf.len() - (end + 4);
    while have < length {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HttpError::Malformed("connection closed inside the body"));
        }
        have += n;
    }
    Ok(request)
}

/// Parses a request head (without its blank line): the request and its
/// body's length.
pub(crate) fn parse_head(head: &[u8]) -> Result<(Request, usize), HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("bad request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed("bad method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(HttpError::Malformed("bad target"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::Malformed("bad version"));
    }
    let mut length = 0;
    for (count, header) in lines.enumerate() {
        if count >= MAX_HEADERS {
            return Err(HttpError::TooLarge);
        }
        let (name, value) = header.split_once(':').ok_or(HttpError::Malformed("bad header"))?;
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(HttpError::Malformed("bad header name"));
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| HttpError::Malformed("bad content-length"))?;
            if length > MAX_BODY {
                return Err(HttpError::TooLarge);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Malformed("transfer-encoding is not supported"));
        }
    }
    Ok((Request { method: method.to_owned(), target: target.to_owned() }, length))
}

/// A complete response with a JSON body; the connection closes after it.
pub(crate) fn response(status: u16, body: &str) -> Vec<u8> {
    response_of(status, "application/json", body)
}

/// A complete response with a body of `content_type`; the connection
/// closes after it.
pub(crate) fn response_of(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Internal Server Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The value of `key` in the query of `target` (`?since=4&follow=1`), as is.
pub(crate) fn query<'a>(target: &'a str, key: &str) -> Option<&'a str> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// The head of a response whose body streams until the connection
/// closes (an event stream, a followed log).
pub(crate) fn stream_head(content_type: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<(Request, usize), HttpError> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn parses_a_request_line_and_headers() {
        let (req, len) = head("POST /v1/vassals/a.ini/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 2").unwrap();
        assert_eq!((req.method.as_str(), req.target.as_str(), len), ("POST", "/v1/vassals/a.ini/stop", 2));
    }

    #[test]
    fn refuses_what_it_does_not_speak() {
        for bad in [
            "",
            "GET",
            "GET /x",
            "get /x HTTP/1.1",
            "GET x HTTP/1.1",
            "GET /x HTTP/2",
            "GET /x HTTP/1.1 extra",
            "GET /x HTTP/1.1\r\nno colon",
            "GET /x HTTP/1.1\r\nbad name: v",
            "GET /x HTTP/1.1\r\nContent-Length: -1",
            "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked",
        ] {
            assert!(matches!(head(bad), Err(HttpError::Malformed(_))), "{bad:?}");
        }
        assert!(matches!(head("GET /x HTTP/1.1\r\nContent-Length: 99999"), Err(HttpError::TooLarge)));
        let many = format!("GET /x HTTP/1.1{}", "\r\nA: b".repeat(MAX_HEADERS + 1));
        assert!(matches!(head(&many), Err(HttpError::TooLarge)));
    }

    #[tokio::test]
    async fn reads_a_request_and_its_body_and_bounds_the_head() {
        let mut input: &[u8] = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(read_request(&mut input).await.unwrap().target, "/a");
        let endless = vec![b'a'; MAX_HEAD + 10];
        assert!(matches!(read_request(&mut endless.as_slice()).await, Err(HttpError::TooLarge)));
        let mut cut: &[u8] = b"GET /a HTTP/1.1\r\n";
        assert!(matches!(read_request(&mut cut).await, Err(HttpError::Malformed(_))));
    }
}
