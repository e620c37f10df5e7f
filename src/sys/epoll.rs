//! An edge-triggered epoll set with a waker: one thread waits on thousands
//! of fds at once, and another thread can wake it to hand it work.

use rustix::event::{epoll, eventfd, EventfdFlags};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

/// The token [`Poller::wait`] reports for a wake-up by a [`Waker`].
pub const WAKE_TOKEN: u64 = 0;

/// What happened to one registered fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The token it was registered with.
    pub token: u64,
    /// Every writer closed its end (or an error): read what is left, then close.
    pub hangup: bool,
}

/// An epoll set whose members are watched for input, edge-triggered: each
/// is reported when new input arrives (or its writers go), not for as long
/// as unread input waits.
#[derive(Debug)]
pub struct Poller {
    epoll: OwnedFd,
    wake: Arc<OwnedFd>,
}

/// Wakes the thread blocked in [`Poller::wait`] (it reports [`WAKE_TOKEN`]).
#[derive(Debug, Clone)]
pub struct Waker(Arc<OwnedFd>);

impl Waker {
    /// Wakes the poller's thread; wake-ups not yet seen merge into one.
    pub fn wake(&self) {
        let _ = rustix::io::write(&*self.0, &1u64.to_ne_bytes());
    }
}

impl Poller {
    /// An empty set, with its waker registered.
    pub fn new() -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let poller = Self { epoll, wake: Arc::new(wake) };
        poller.add(poller.wake.as_fd(), WAKE_TOKEN)?;
        Ok(poller)
    }

    /// A waker of this poller, for another thread.
    pub fn waker(&self) -> Waker {
        Waker(self.wake.clone())
    }

    /// Watches `fd` for input under `token` (not [`WAKE_TOKEN`]). If input
    /// already waits, the next [`Poller::wait`] reports it.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let flags = epoll::EventFlags::IN | epoll::EventFlags::ET;
        Ok(epoll::add(&self.epoll, fd, epoll::EventData::new_u64(token), flags)?)
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(epoll::delete(&self.epoll, fd)?)
    }

    /// Waits until something is ready and appends it to `out` (a wake-up
    /// is drained and reported once as [`WAKE_TOKEN`]).
    pub fn wait(&self, out: &mut Vec<Readiness>) -> io::Result<()> {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
        loop {
            match epoll::wait(&self.epoll, rustix::buffer::spare_capacity(&mut events), None) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for event in events {
            // Copied out: the kernel's struct is packed.
            let (flags, data) = (event.flags, event.data);
            let token = data.u64();
            if token == WAKE_TOKEN {
                let mut count = [0u8; 8];
                let _ = rustix::io::read(&*self.wake, &mut count);
            }
            let hangup = flags.intersects(epoll::EventFlags::HUP | epoll::EventFlags::ERR);
            out.push(Readiness { token, hangup });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reports_input_hangups_and_wakeups() {
        let poller = Poller::new().unwrap();
        let (read, write) = super::super::pipe::output_pipe().unwrap();
        let mut writer = std::fs::File::from(write);
        writer.write_all(b"x").unwrap();
        poller.add(read.as_fd(), 7).unwrap();
        let mut ready = Vec::new();
        poller.wait(&mut ready).unwrap();
        assert_eq!(ready, [Readiness { token: 7, hangup: false }]);

        let waker = poller.waker();
        std::thread::spawn(move || waker.wake()).join().unwrap();
        ready.clear();
        poller.wait(&mut ready).unwrap();
        assert_eq!(ready, [Readiness { token: WAKE_TOKEN, hangup: false }]);

        drop(writer);
        ready.clear();
        poller.wait(&mut ready).unwrap();
        assert_eq!(ready, [Readiness { token: 7, hangup: true }]);
        poller.remove(read.as_fd()).unwrap();
    }
}
