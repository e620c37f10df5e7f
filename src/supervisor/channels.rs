//! The control channels of every uWSGI-style vassal, read by the supervisor
//! itself through one epoll set that the runtime watches as a single fd.
//!
//! A task and a reactor registration per channel cost about a kilobyte per
//! vassal; here a channel costs one slot (its vassal and generation) and
//! the kernel's entry in the set. The set is level-triggered: bytes left
//! unread, or a hang-up, are reported again at the next wait.

use futures::FutureExt;
use reconciler::VassalName;
use rustix::event::epoll;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

/// Channels read in one pass at most; more wait for the next pass (the
/// set stays readable), so that a burst does not hold up other wake-ups.
const PASS: usize = 256;

/// What a watched channel brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Heard {
    /// Bytes (one message each).
    Bytes(Vec<u8>),
    /// It hung up (or failed): it is no longer watched.
    HungUp,
}

/// One watched channel.
struct Slot {
    name: VassalName,
    generation: u64,
    stream: Arc<UnixStream>,
}

/// The set of watched control channels; see the module docs.
pub(super) struct Channels {
    epoll: AsyncFd<OwnedFd>,
    slots: Vec<Option<Slot>>,
    /// Slots free for reuse.
    free: Vec<u32>,
}

impl Channels {
    /// An empty set.
    pub(super) fn new() -> std::io::Result<Self> {
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(Self { epoll: crate::sys::dgram::into_async(fd)?, slots: Vec::new(), free: Vec::new() })
    }

    /// Watches `stream`, the channel of `name`'s process `generation`;
    /// returns its slot (for [`Channels::forget`]).
    pub(super) fn watch(
        &mut self,
        name: &VassalName,
        generation: u64,
        stream: Arc<UnixStream>,
    ) -> std::io::Result<u32> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let data = epoll::EventData::new_u64(u64::from(slot));
        if let Err(e) = epoll::add(self.epoll.get_ref(), stream.as_fd(), data, epoll::EventFlags::IN) {
            self.free.push(slot);
            return Err(e.into());
        }
        self.slots[slot as usize] = Some(Slot { name: name.clone(), generation, stream });
        Ok(slot)
    }

    /// Stops watching the channel in `slot` if it is still that of
    /// `generation` (a hung-up channel's slot may already serve another).
    pub(super) fn forget(&mut self, slot: u32, generation: u64) {
        let Some(entry) = self.slots.get_mut(slot as usize) else { return };
        if entry.as_ref().is_some_and(|s| s.generation == generation) {
            let gone = entry.take().expect("checked above");
            // Removed by hand: the fd holder's copy keeps the socket, and
            // with it the registration, alive after our fd is closed.
            let _ = epoll::delete(self.epoll.get_ref(), gone.stream.as_fd());
            self.free.push(slot);
        }
    }

    /// Waits until a watched channel may have something to say.
    pub(super) async fn readable(&self) {
        if self.epoll.readable().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// What the channels ready now brought, in one pass: each with its
    /// vassal and generation. A hung-up channel is forgotten.
    pub(super) fn drain(&mut self) -> Vec<(VassalName, u64, Heard)> {
        // The readiness the reactor has seen, taken before the wait: it is
        // cleared only once the set has nothing more to report.
        let mut seen = self.epoll.readable().now_or_never().and_then(Result::ok);
        let mut events = Vec::with_capacity(PASS);
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        let ready = epoll::wait(self.epoll.get_ref(), rustix::buffer::spare_capacity(&mut events), Some(&zero));
        if ready.is_err() || events.is_empty() {
            if let Some(guard) = seen.as_mut() {
                guard.clear_ready();
            }
            return Vec::new();
        }
        events.iter().filter_map(|event| self.read(event.data.u64() as u32)).collect()
    }

    /// Reads what the channel in `slot` has; forgets it when it hung up.
    fn read(&mut self, slot: u32) -> Option<(VassalName, u64, Heard)> {
        let entry = self.slots.get(slot as usize)?.as_ref()?;
        let mut buf = [0u8; 64];
        let heard = match rustix::net::recv(entry.stream.as_fd(), &mut buf, rustix::net::RecvFlags::DONTWAIT) {
            Ok((n, _)) if n > 0 => Heard::Bytes(buf[..n].to_vec()),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return None,
            _ => Heard::HungUp,
        };
        let (name, generation) = (entry.name.clone(), entry.generation);
        if heard == Heard::HungUp {
            self.forget(slot, generation);
        }
        Some((name, generation, heard))
    }

    /// How many channels are watched.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn name(text: &str) -> VassalName {
        VassalName::parse(text).unwrap()
    }

    /// The next non-empty pass, waiting at most a few seconds.
    async fn next(channels: &mut Channels) -> Vec<(VassalName, u64, Heard)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let heard = channels.drain();
            if !heard.is_empty() {
                return heard;
            }
            tokio::time::timeout_at(deadline, channels.readable()).await.expect("a channel spoke");
        }
    }

    #[tokio::test]
    async fn bytes_then_the_hang_up_of_each_channel_come_with_its_vassal() {
        let mut channels = Channels::new().unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (other, _other_theirs) = UnixStream::pair().unwrap();
        let slot = channels.watch(&name("a.ini"), 3, Arc::new(ours)).unwrap();
        channels.watch(&name("b.ini"), 4, Arc::new(other)).unwrap();
        theirs.write_all(&[1, 5, 17]).unwrap();
        assert_eq!(next(&mut channels).await, vec![(name("a.ini"), 3, Heard::Bytes(vec![1, 5, 17]))]);
        drop(theirs);
        assert_eq!(next(&mut channels).await, vec![(name("a.ini"), 3, Heard::HungUp)]);
        assert_eq!(channels.len(), 1, "a hung-up channel is no longer watched");
        channels.forget(slot, 3);
        assert_eq!(channels.len(), 1, "forgetting a slot already freed changes nothing");
    }

    #[tokio::test]
    async fn a_forgotten_channel_is_silent_and_its_slot_serves_the_next() {
        let mut channels = Channels::new().unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let ours = Arc::new(ours);
        let slot = channels.watch(&name("a.ini"), 1, ours.clone()).unwrap();
        channels.forget(slot, 1);
        theirs.write_all(&[26]).unwrap();
        assert!(channels.drain().is_empty(), "nothing is read from a forgotten channel");
        let (again, mut again_theirs) = UnixStream::pair().unwrap();
        assert_eq!(channels.watch(&name("a.ini"), 2, Arc::new(again)).unwrap(), slot);
        channels.forget(slot, 1);
        again_theirs.write_all(&[22]).unwrap();
        assert_eq!(next(&mut channels).await, vec![(name("a.ini"), 2, Heard::Bytes(vec![22]))]);
    }
}
