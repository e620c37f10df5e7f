//! The uWSGI emperor channels: a control socketpair carrying one-byte
//! messages, and for inline configs a config socketpair carrying one framed
//! blob.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Emperor → vassal: stop now.
pub const STOP: u8 = 0;
/// Emperor → vassal: graceful reload.
pub const RELOAD: u8 = 1;

/// Vassal → emperor messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VassalMessage {
    /// 1: spawned and ready.
    Ready,
    /// 2: send the config again.
    ConfigRequest,
    /// 5: accepting requests.
    Accepting,
    /// 17: loyal.
    Loyal,
    /// 22: wants to stop.
    WantsStop,
    /// 26: heartbeat.
    Heartbeat,
    /// 30: asks for reinforcements (not supported).
    Reinforcements,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for VassalMessage {
    fn from(byte: u8) -> Self {
        match byte {
            1 => Self::Ready,
            2 => Self::ConfigRequest,
            5 => Self::Accepting,
            17 => Self::Loyal,
            22 => Self::WantsStop,
            26 => Self::Heartbeat,
            30 => Self::Reinforcements,
            other => Self::Unknown(other),
        }
    }
}

/// Why an inline config cannot be sent.
#[derive(Debug, thiserror::Error)]
#[error("inline config is {0} bytes; the uWSGI config channel carries at most 65535")]
pub struct ConfigTooLarge(pub usize);

/// Frames a config blob: modifier1 = 115, size as u16 little-endian, modifier2 = 0, body.
pub fn frame_config(config: &[u8]) -> Result<Vec<u8>, ConfigTooLarge> {
    // The frame's size field is 16 bits: anything larger would wrap.
    let size = u16::try_from(config.len()).map_err(|_| ConfigTooLarge(config.len()))?;
    let mut out = Vec::with_capacity(4 + config.len());
    out.push(115);
    out.extend_from_slice(&size.to_le_bytes());
    out.push(0);
    out.extend_from_slice(config);
    Ok(out)
}

/// Both ends of one channel: ours stays in the emperor, theirs goes to the vassal.
pub struct Pair {
    /// The emperor's end (close-on-exec).
    pub ours: UnixStream,
    /// The vassal's end, inherited across exec.
    pub theirs: OwnedFd,
}

impl Pair {
    /// A new `AF_UNIX SOCK_STREAM` socketpair; both ends close-on-exec
    /// (the spawner clears the flag on the vassal's end in the child only).
    pub fn new() -> std::io::Result<Self> {
        let (ours, theirs) = UnixStream::pair()?;
        Ok(Self { ours, theirs: theirs.into() })
    }

    /// The fd number of the vassal's end.
    pub fn their_fd(&self) -> i32 {
        self.theirs.as_raw_fd()
    }
}

/// Writes all of `bytes` to a blocking-mode clone of `stream`'s socket.
pub fn send_all(stream: &UnixStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut s = stream;
    s.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const MAX_CONFIG: usize = u16::MAX as usize;

    #[test]
    fn frames_have_the_uwsgi_header() {
        assert_eq!(frame_config(b"ab").unwrap(), [115, 2, 0, 0, b'a', b'b']);
        let big = vec![b'x'; 300];
        assert_eq!(&frame_config(&big).unwrap()[..4], &[115, 44, 1, 0]);
        assert_eq!(frame_config(&vec![0; MAX_CONFIG]).unwrap().len(), MAX_CONFIG + 4);
    }

    #[test]
    fn oversized_configs_are_refused() {
        let err = frame_config(&vec![0; MAX_CONFIG + 1]).unwrap_err();
        assert!(err.to_string().contains("65536 bytes"));
    }

    #[test]
    fn a_framed_config_crosses_the_pair() {
        let pair = Pair::new().unwrap();
        send_all(&pair.ours, &frame_config(b"[uwsgi]\nx=1\n").unwrap()).unwrap();
        let mut theirs = UnixStream::from(pair.theirs);
        let mut buf = [0u8; 16];
        theirs.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..4], &[115, 12, 0, 0]);
        assert_eq!(&buf[4..], b"[uwsgi]\nx=1\n");
    }

    #[test]
    fn message_bytes() {
        assert_eq!(VassalMessage::from(26), VassalMessage::Heartbeat);
        assert_eq!(VassalMessage::from(99), VassalMessage::Unknown(99));
    }
}
