//! The fds of a spawned process, set up without copying the emperor's fd
//! table.
//!
//! The emperor holds one fd per uWSGI-style vassal (its control channel):
//! with 10 000 running, a plain clone copies a table of 10 000 entries and
//! exec then closes them one by one. Instead the child shares the
//! emperor's table (`CLONE_FILES`), and its first act on fds is one
//! `close_range(LOW, ~0, CLOSE_RANGE_UNSHARE)`: the kernel gives it a
//! private table holding only the fds below `LOW`, whatever the emperor
//! has open above. For that, every fd the child keeps must be below `LOW`
//! in the emperor's table at the clone: the emperor keeps a few low fd
//! numbers (slots) on `/dev/null`, copies a spawn's fds into them just
//! before the clone and puts `/dev/null` back once the child has exec'd.
//! In its private table the child then moves each fd to its target number
//! and closes every other one.

use rustix::io::{dup3, fcntl_dupfd_cloexec, DupFlags};
use std::ffi::c_int;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Slots taken when the emperor starts: the log and the two channel ends of
/// a uWSGI-style vassal (stdin is the pool's own `/dev/null`). A spawn with
/// more fds (a native vassal's sockets) takes more, once. Few: each is an
/// fd less under the emperor's RLIMIT_NOFILE.
const INITIAL_SLOTS: usize = 3;

/// The low fd numbers kept for spawns, each on `/dev/null` between them.
#[derive(Debug)]
struct Slots {
    /// `/dev/null`, put back into every slot after a spawn; also the
    /// child's stdin unless it is given another.
    null: OwnedFd,
    /// The slots, lowest first when taken at start.
    slots: Vec<OwnedFd>,
}

/// The pool; a spawn holds it from staging until its child has exec'd.
static POOL: Mutex<Option<Slots>> = Mutex::new(None);

/// Takes the slots now, while the lowest fd numbers are free; call at
/// start, before anything else opens fds. (A process that never calls it
/// takes them at its first spawn.)
pub fn reserve_slots() {
    if let Err(e) = lock() {
        tracing::warn!(error = %e, "cannot keep low fds for spawns; spawns copy the whole fd table");
    }
}

/// The pool, filled on first use.
fn lock() -> std::io::Result<MutexGuard<'static, Option<Slots>>> {
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if pool.is_none() {
        let null: OwnedFd = std::fs::File::open("/dev/null")?.into();
        let slots = (0..INITIAL_SLOTS).map(|_| fcntl_dupfd_cloexec(&null, 3)).collect::<Result<_, _>>()?;
        *pool = Some(Slots { null, slots });
    }
    Ok(pool)
}

/// The fds of one spawn, copied into slots of the emperor's table: what
/// the child is told to do with them. Dropping it puts `/dev/null` back
/// into the slots (which drops the emperor's extra references to the
/// vassal's files) and lets the next spawn stage its own.
#[derive(Debug)]
pub(super) struct Staged {
    pool: MutexGuard<'static, Option<Slots>>,
    /// Slots in use, from the first.
    used: usize,
    /// `(slot, target)`, sorted by target; a slot may feed several targets.
    pub(super) moves: Vec<(c_int, c_int)>,
    /// One above the highest slot in use: the child unshares from there.
    pub(super) low: c_int,
    /// Where the child parks its copies between the slots and the targets:
    /// above every slot and every target, so that no move overwrites an
    /// fd still to be read.
    pub(super) parking: c_int,
}

/// Copies the sources of `fds` (`(source, target)`, each source an open fd
/// of the emperor, each target used once) into slots; without a target 0,
/// the child's stdin is `/dev/null`.
pub(super) fn stage(fds: &[(c_int, c_int)]) -> std::io::Result<Staged> {
    let mut staged = Staged { pool: lock()?, used: 0, moves: Vec::with_capacity(fds.len() + 1), low: 3, parking: 3 };
    if !fds.iter().any(|&(_, target)| target == 0) {
        let null = staged.pool().null.as_raw_fd();
        staged.push(null, 0);
    }
    // `(source, slot index)`: a source with several targets is copied once.
    let mut filled: Vec<(c_int, usize)> = Vec::with_capacity(fds.len());
    for &(source, target) in fds {
        let index = match filled.iter().find(|&&(s, _)| s == source) {
            Some(&(_, index)) => index,
            None => {
                staged.fill(source)?;
                filled.push((source, staged.used - 1));
                staged.used - 1
            }
        };
        let slot = staged.pool().slots[index].as_raw_fd();
        staged.push(slot, target);
    }
    staged.moves.sort_unstable_by_key(|&(_, target)| target);
    let highest_target = staged.moves.last().map_or(2, |&(_, target)| target);
    staged.parking = staged.low.max(highest_target + 1);
    Ok(staged)
}

impl Staged {
    fn pool(&mut self) -> &mut Slots {
        self.pool.as_mut().expect("the pool is filled by lock()")
    }

    /// The next free slot (on `/dev/null`), taking one more (the lowest
    /// free fd now) when every one is in use.
    fn take_slot(&mut self) -> std::io::Result<&mut OwnedFd> {
        let used = self.used;
        let pool = self.pool.as_mut().expect("the pool is filled by lock()");
        if used == pool.slots.len() {
            let slot = fcntl_dupfd_cloexec(&pool.null, 3)?;
            pool.slots.push(slot);
        }
        self.used += 1;
        Ok(&mut pool.slots[used])
    }

    /// Copies `source` into the next free slot.
    fn fill(&mut self, source: c_int) -> std::io::Result<()> {
        // SAFETY: the request's fds are open for the whole spawn (see
        // `SpawnRequest::moved_fds`).
        let source = unsafe { BorrowedFd::borrow_raw(source) };
        dup3(source, self.take_slot()?, DupFlags::CLOEXEC)?;
        Ok(())
    }

    /// Tells the child to place `slot` (one of the pool's fds) at `target`.
    fn push(&mut self, slot: c_int, target: c_int) {
        self.moves.push((slot, target));
        self.low = self.low.max(slot + 1);
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let used = self.used;
        let pool = self.pool();
        for slot in &mut pool.slots[..used] {
            // Cannot fail: both fds are open, and the slot's number stays
            // taken throughout.
            let _ = dup3(&pool.null, slot, DupFlags::CLOEXEC);
        }
    }
}

/// Why the child could not set up its fds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FdStep {
    /// Neither `close_range(CLOSE_RANGE_UNSHARE)` nor `unshare` gave it a
    /// table of its own.
    Unshare,
    /// A copy to its target number failed.
    Place,
}

/// In the child, before anything else touches an fd: leaves the emperor's
/// table, moves each staged fd to its target and closes every other fd.
/// Returns the failed step and its errno.
///
/// # Safety
/// Call only in a child cloned with `CLONE_FILES` while `staged` is alive
/// in the parent; only makes system calls (async-signal-safe).
pub(super) unsafe fn place(moves: &[(c_int, c_int)], low: c_int, parking: c_int) -> Result<(), (FdStep, c_int)> {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL);
    // A private table holding only the fds below `low`; a kernel without
    // CLOSE_RANGE_UNSHARE (before 5.9) copies the whole table instead.
    if libc::syscall(libc::SYS_close_range, low as u32, u32::MAX, libc::CLOSE_RANGE_UNSHARE) < 0
        && libc::unshare(libc::CLONE_FILES) < 0
    {
        return Err((FdStep::Unshare, errno()));
    }
    // Every slot first to a parking number, then every parked copy to its
    // target: a target may be a slot that another move still reads.
    for (i, &(slot, _)) in moves.iter().enumerate() {
        if libc::dup3(slot, parking + i as c_int, libc::O_CLOEXEC) < 0 {
            return Err((FdStep::Place, errno()));
        }
    }
    for (i, &(_, target)) in moves.iter().enumerate() {
        // dup2 leaves the copy inheritable; the parked copy closes below.
        if libc::dup2(parking + i as c_int, target) < 0 {
            return Err((FdStep::Place, errno()));
        }
    }
    close_others(moves);
    Ok(())
}

/// Closes every fd that is not a target (`moves` sorted by target). Where
/// `close_range` is missing, the emperor's fds are all close-on-exec.
///
/// # Safety
/// Only in the child, in its private table.
unsafe fn close_others(moves: &[(c_int, c_int)]) {
    let mut next = 0u32;
    for &(_, target) in moves {
        let target = target as u32;
        if target > next {
            libc::syscall(libc::SYS_close_range, next, target - 1, 0u32);
        }
        next = next.max(target + 1);
    }
    libc::syscall(libc::SYS_close_range, next, u32::MAX, 0u32);
}

#[cfg(test)]
mod tests {
    use crate::sys::spawn::{spawn, SpawnRequest};
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;

    /// `sleep 30` with `moved_fds`, its output to `log`.
    fn sleeper(moved_fds: Vec<(i32, i32)>, log: &std::fs::File) -> SpawnRequest {
        SpawnRequest {
            program: "sleep".into(),
            args: vec!["30".into()],
            cwd: Some("/".into()),
            env: Vec::new(),
            env_remove: Vec::new(),
            moved_fds,
            log: log.try_clone().unwrap(),
            user: None,
            umask: None,
        }
    }

    /// Every open fd of `pid` and what it points to. (The clone returns
    /// once the child has exec'd: its fds are final.)
    fn fds_of(pid: i32) -> BTreeMap<i32, PathBuf> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                (entry.file_name().to_str().unwrap().parse().unwrap(), std::fs::read_link(entry.path()).unwrap())
            })
            .collect()
    }

    fn stop(pid: i32) {
        crate::sys::signal::kill(pid, libc::SIGKILL).unwrap();
        crate::sys::wait::reap_soon(pid);
    }

    /// What `/proc` shows for a socket of ours.
    fn link_of(fd: &impl AsRawFd) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    #[test]
    fn the_child_gets_only_its_own_fds_whatever_the_parent_holds() {
        let extra: Vec<std::fs::File> = (0..1000).map(|_| std::fs::File::open("/dev/null").unwrap()).collect();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (listener, _) = UnixStream::pair().unwrap();
        let pid = spawn(sleeper(vec![(theirs.as_raw_fd(), 4), (listener.as_raw_fd(), 0)], &log)).unwrap();
        let fds = fds_of(pid);
        stop(pid);
        let log_path = link_of(&log);
        let expected =
            BTreeMap::from([(0, link_of(&listener)), (1, log_path.clone()), (2, log_path), (4, link_of(&theirs))]);
        assert_eq!(fds, expected, "with {} fds open in the parent", extra.len());
        // The slots dropped their copies: once the child is gone and the
        // parent closed its end, the channel reads EOF.
        drop(theirs);
        ours.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        assert_eq!((&ours).read(&mut [0u8; 1]).unwrap(), 0);
    }

    #[test]
    fn stdin_is_dev_null_unless_given() {
        let log = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
        let (_ours, theirs) = UnixStream::pair().unwrap();
        let pid = spawn(sleeper(vec![(theirs.as_raw_fd(), 3)], &log)).unwrap();
        let fds = fds_of(pid);
        stop(pid);
        let null = PathBuf::from("/dev/null");
        let expected = BTreeMap::from([(0, null.clone()), (1, null.clone()), (2, null), (3, link_of(&theirs))]);
        assert_eq!(fds, expected);
    }

    #[test]
    fn a_spawn_with_more_fds_than_slots_takes_more_slots() {
        let log = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
        let pairs: Vec<(UnixStream, UnixStream)> =
            (0..super::INITIAL_SLOTS + 3).map(|_| UnixStream::pair().unwrap()).collect();
        let moved = (3..).zip(&pairs).map(|(target, (_, theirs))| (theirs.as_raw_fd(), target)).collect();
        let pid = spawn(sleeper(moved, &log)).unwrap();
        let fds = fds_of(pid);
        stop(pid);
        let null = PathBuf::from("/dev/null");
        let mut expected = BTreeMap::from([(0, null.clone()), (1, null.clone()), (2, null)]);
        expected.extend((3..).zip(&pairs).map(|(target, (_, theirs))| (target, link_of(theirs))));
        assert_eq!(fds, expected);
    }

    /// System CPU time of this process and its reaped children: the
    /// kernel's fd-table work at clone and at exec, whatever the load.
    fn system_cpu() -> std::time::Duration {
        let of = |who| {
            // SAFETY: getrusage writes into the zeroed struct it is given.
            let usage = unsafe {
                let mut usage: libc::rusage = std::mem::zeroed();
                libc::getrusage(who, &mut usage);
                usage
            };
            std::time::Duration::new(usage.ru_stime.tv_sec as u64, usage.ru_stime.tv_usec as u32 * 1000)
        };
        of(libc::RUSAGE_SELF) + of(libc::RUSAGE_CHILDREN)
    }

    /// The median time `spawn` takes (the caller's thread is held until
    /// the child has exec'd) over `trials` spawns of `true`, and the system
    /// CPU each took.
    fn spawn_p50(trials: usize) -> (std::time::Duration, std::time::Duration) {
        let cpu = system_cpu();
        let log = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
        let mut times: Vec<std::time::Duration> = (0..trials)
            .map(|_| {
                let (_ours, theirs) = UnixStream::pair().unwrap();
                let request =
                    SpawnRequest { program: "/bin/true".into(), ..sleeper(vec![(theirs.as_raw_fd(), 3)], &log) };
                let start = std::time::Instant::now();
                let pid = spawn(request).unwrap();
                let took = start.elapsed();
                crate::sys::wait::reap_soon(pid);
                took
            })
            .collect();
        times.sort();
        (times[trials / 2], (system_cpu() - cpu) / trials as u32)
    }

    /// Figure, not a check: a spawn with 10 000 fds open in the parent
    /// (the channels of 10 000 uWSGI-style vassals) against one with none.
    /// `cargo test --release --lib -- --ignored --nocapture spawn_time`
    #[test]
    #[ignore]
    fn figure_spawn_time_with_10000_open_fds() {
        let trials = 500;
        spawn_p50(50); // warm-up: the program's pages in the cache
        let bare = spawn_p50(trials);
        let extra: Vec<std::fs::File> = (0..10_000).map(|_| std::fs::File::open("/dev/null").unwrap()).collect();
        let loaded = spawn_p50(trials);
        println!(
            "spawn over {trials}: p50 {:?} and {:?} of system CPU each with no extra fd; p50 {:?} and {:?} with {} open",
            bare.0,
            bare.1,
            loaded.0,
            loaded.1,
            extra.len()
        );
    }
}
