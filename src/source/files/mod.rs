//! The inotify loop shared by file sources. A [`Layout`] says what to watch
//! and which paths are configs; this loop turns completed writes, renames,
//! attribute changes and deletions into [`SourceEvent`]s.

mod dir;
mod dirstamps;
mod fileset;
mod glob;

pub use dir::DirSource;
pub use glob::GlobSource;

use crate::source::{SourceContext, SourceError, SourceEvent, SourceTask};
use dirstamps::DirStamps;
use fileset::{Change, FileSet};
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use reconciler::VassalName;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a file that was modified without being closed (a writer that
/// keeps it open, or an mtime-only change) may stay quiet before it is read.
const QUIET: Duration = Duration::from_millis(100);

/// What an event path means to a layout.
#[derive(Debug, PartialEq, Eq)]
pub enum Classified {
    /// A config file of this source: restat just this one.
    File(VassalName, PathBuf),
    /// Something that may change the listing (a symlink, a directory): rescan.
    Rescan,
    /// A watched root or one of its ancestors changed: watch again and rescan.
    Resetup,
    /// Not ours.
    Ignore,
}

/// The shape of a file source.
pub trait Layout: Send + 'static {
    /// Directories to watch, and whether recursively.
    fn roots(&self) -> Vec<(PathBuf, RecursiveMode)>;
    /// Every config file of the source now; `Err` when the root is missing.
    fn list(&self) -> std::io::Result<Vec<(VassalName, PathBuf)>>;
    /// What a changed path means.
    fn classify(&self, path: &Path) -> Classified;
}

/// What wakes the watch loop: a watch event, or `None` to stop.
type Wake = Option<notify::Result<notify::Event>>;

/// Builds a file source: the watcher is created now; the task runs the
/// watch loop on a blocking thread of the source runtime (file I/O never
/// runs on an async worker) until shutdown.
pub fn task<L: Layout>(layout: L, ctx: SourceContext) -> Result<SourceTask, SourceError> {
    let uri = ctx.id.0.clone();
    let (tx, rx) = std::sync::mpsc::channel::<Wake>();
    let wake = tx.clone();
    let watcher = notify::recommended_watcher(move |res| {
        let _ = tx.send(Some(res));
    })
    .map_err(|e| SourceError::Start { uri: uri.clone(), message: e.to_string() })?;
    let mut shutdown = ctx.shutdown.clone();
    Ok(Box::pin(async move {
        // Ends the loop when shutdown is asked for, and also when this task
        // is aborted or dropped (the guard's drop wakes the loop).
        let stop = StopOnDrop(wake);
        let mut looping = tokio::task::spawn_blocking(move || Loop::new(layout, ctx, watcher).run(rx));
        let joined = tokio::select! {
            joined = &mut looping => joined,
            () = shutdown.requested() => {
                drop(stop);
                looping.await
            }
        };
        match joined {
            Ok(()) => Ok(()),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(SourceError::Failed { uri, message: e.to_string() }),
        }
    }))
}

/// Wakes the watch loop with "stop" when dropped.
struct StopOnDrop(std::sync::mpsc::Sender<Wake>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(None);
    }
}

/// What a batch of events asks for.
#[derive(Default)]
struct Todo {
    resetup: bool,
    rescan: bool,
    files: Vec<(VassalName, PathBuf)>,
    modified: Vec<(VassalName, PathBuf)>,
}

struct Loop<L> {
    layout: L,
    ctx: SourceContext,
    watcher: notify::RecommendedWatcher,
    watched: Vec<PathBuf>,
    set: FileSet,
    listed: bool,
    missing_reported: bool,
    /// Files modified but not closed yet, with the time to read them anyway.
    pending: BTreeMap<PathBuf, (VassalName, Instant)>,
    /// The directories of the last full listing: the periodic safety net
    /// lists again only when one of them changed.
    stamps: DirStamps,
}

impl<L: Layout> Loop<L> {
    fn new(layout: L, ctx: SourceContext, watcher: notify::RecommendedWatcher) -> Self {
        let set = FileSet::new(ctx.id.clone(), ctx.file_owners);
        Self {
            layout,
            ctx,
            watcher,
            watched: Vec::new(),
            set,
            listed: false,
            missing_reported: false,
            pending: BTreeMap::new(),
            stamps: DirStamps::default(),
        }
    }

    fn run(mut self, rx: Receiver<Wake>) {
        self.setup();
        if !self.rescan() {
            return;
        }
        loop {
            let mut todo = Todo::default();
            let wait = self.pending.values().map(|(_, at)| at.saturating_duration_since(Instant::now())).min();
            match rx.recv_timeout(wait.map_or(self.ctx.resync, |w| w.min(self.ctx.resync))) {
                Ok(None) => return,
                Ok(Some(first)) => {
                    self.note(first, &mut todo);
                    while let Ok(more) = rx.try_recv() {
                        match more {
                            Some(more) => self.note(more, &mut todo),
                            None => return,
                        }
                    }
                }
                // The safety net: one stat per directory; a full listing
                // only when a directory changed behind the watches' back.
                Err(RecvTimeoutError::Timeout) if self.pending.is_empty() => todo.rescan = self.stamps.changed(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if !self.apply(todo) {
                return;
            }
        }
    }

    fn note(&self, event: notify::Result<notify::Event>, todo: &mut Todo) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(source = %self.ctx.id, error = %e, "watch error; rescanning");
                todo.rescan = true;
                return;
            }
        };
        if matches!(event.kind, EventKind::Modify(ModifyKind::Data(_))) {
            for path in &event.paths {
                if let Classified::File(name, path) = self.layout.classify(path) {
                    todo.modified.push((name, path));
                }
            }
            return;
        }
        if !is_completed_change(&event.kind) {
            return;
        }
        let is_create = matches!(event.kind, EventKind::Create(_));
        for path in &event.paths {
            if is_create && is_plain_file(path) {
                continue; // wait for its close-write
            }
            match self.layout.classify(path) {
                Classified::File(name, path) => todo.files.push((name, path)),
                Classified::Rescan => todo.rescan = true,
                Classified::Resetup => todo.resetup = true,
                Classified::Ignore => {}
            }
        }
        if matches!(event.kind, EventKind::Other) || event.need_rescan() {
            todo.rescan = true;
        }
    }

    /// Applies a batch; `false` once the emperor has gone away.
    fn apply(&mut self, mut todo: Todo) -> bool {
        let now = Instant::now();
        for (name, path) in todo.modified {
            self.pending.entry(path).or_insert((name, now + QUIET));
        }
        for (_, path) in &todo.files {
            self.pending.remove(path);
        }
        let due: Vec<PathBuf> = self.pending.iter().filter(|(_, (_, at))| *at <= now).map(|(p, _)| p.clone()).collect();
        for path in due {
            let (name, _) = self.pending.remove(&path).expect("listed above");
            todo.files.push((name, path));
        }
        if todo.resetup {
            self.setup();
        }
        if todo.resetup || todo.rescan || !self.listed {
            return self.rescan();
        }
        for (name, path) in todo.files {
            if let Some(change) = self.set.restat(name, path) {
                if !self.forward(change) {
                    return false;
                }
            }
        }
        true
    }

    /// (Re)places the watches: each root, or while it is missing its nearest
    /// existing ancestor, plus the root's parent to notice symlink swaps.
    fn setup(&mut self) {
        for path in std::mem::take(&mut self.watched) {
            let _ = self.watcher.unwatch(&path);
        }
        for (root, mode) in self.layout.roots() {
            if let Some(parent) = root.parent().filter(|p| p.is_dir()) {
                self.add_watch(parent.to_owned(), RecursiveMode::NonRecursive);
            }
            if root.is_dir() {
                self.add_watch(root, mode);
            } else if let Some(ancestor) = root.ancestors().skip(2).find(|a| a.is_dir()) {
                self.add_watch(ancestor.to_owned(), RecursiveMode::NonRecursive);
            }
        }
    }

    fn add_watch(&mut self, path: PathBuf, mode: RecursiveMode) {
        if self.watched.contains(&path) {
            return;
        }
        match self.watcher.watch(&path, mode) {
            Ok(()) => self.watched.push(path),
            Err(e) => tracing::warn!(source = %self.ctx.id, path = %path.display(), error = %e, "cannot watch"),
        }
    }

    /// Lists everything again; the first success sends the full snapshot.
    fn rescan(&mut self) -> bool {
        let roots = self.layout.roots().into_iter().map(|(root, _)| root);
        let before = DirStamps::take(dirstamps::dirs_of(roots.clone(), self.set.paths()));
        match self.layout.list() {
            Ok(listing) => {
                self.missing_reported = false;
                let dirs = dirstamps::dirs_of(roots, listing.iter().map(|(_, path)| path.as_path()));
                // Stamped before the listing: a change made while it ran is seen next time.
                self.stamps = before.restricted_to(dirs);
                let changes = self.set.rescan(listing);
                if !self.listed {
                    self.listed = true;
                    let specs = self.set.specs();
                    tracing::info!(source = %self.ctx.id, vassals = specs.len(), "source listed");
                    return self.ctx.blocking_send(SourceEvent::Snapshot { source: self.ctx.id.clone(), specs });
                }
                changes.into_iter().all(|c| self.forward(c))
            }
            Err(e) => {
                if !self.missing_reported {
                    self.missing_reported = true;
                    tracing::warn!(source = %self.ctx.id, error = %e, "cannot list the source yet; watching for it to appear");
                }
                true
            }
        }
    }

    fn forward(&self, change: Change) -> bool {
        let event = match change {
            Change::Upsert(spec) => SourceEvent::Upsert(spec),
            Change::Remove(name) => SourceEvent::Remove { source: self.ctx.id.clone(), name },
        };
        self.ctx.blocking_send(event)
    }
}

/// Events that mark a finished change: close-after-write, rename, attribute
/// change, deletion, creation (of links and directories). Opens and reads
/// are skipped; plain modifications are handled apart (see [`QUIET`]).
fn is_completed_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn is_plain_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}
