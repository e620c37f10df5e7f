//! The client side of the streaming endpoints (`ctl events`, `ctl logs`):
//! the body is copied to stdout as it arrives, until the emperor closes
//! the connection (or, when following, until the reader goes away).

use super::client::CtlError;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// `GET path` on `socket`; prints the body and returns the exit code: 0,
/// 4 for a vassal no source wants, 1 for another refusal.
pub(crate) fn get(socket: &Path, path: &str) -> Result<u8, CtlError> {
    let unreachable = |source| CtlError::Unreachable { socket: socket.to_owned(), source };
    let bad = |why: String| CtlError::Protocol { socket: socket.to_owned(), why };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    // The connection stays open both ways while following: the emperor
    // takes a closed connection for a reader that went away.
    let request = format!("GET {path} HTTP/1.1\r\nHost: emperor\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(unreachable)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(unreachable)?;
    let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status".into()))?;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(unreachable)? == 0 {
            return Err(bad("no end of head".into()));
        }
        if line == "\r\n" {
            break;
        }
    }
    if status != 200 {
        let mut body = String::new();
        let _ = reader.read_to_string(&mut body);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        eprintln!("emperor ctl: {}", json["error"].as_str().unwrap_or(&body));
        return Ok(if status == 404 { 4 } else { 1 });
    }
    copy_out(&mut reader);
    Ok(0)
}

/// Copies `body` to stdout as it arrives, each piece flushed at once. A
/// closed stdout (`| head`) ends the copy; that is not a failure.
fn copy_out(body: &mut impl Read) {
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n @ 1..) = body.read(&mut buf) {
        if stdout.write_all(&buf[..n]).and_then(|()| stdout.flush()).is_err() {
            return;
        }
    }
}
