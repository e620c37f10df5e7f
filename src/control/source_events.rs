//! `source_up` / `source_down` events: the loop is woken when a source's
//! status changes and compares the board with what it saw last.

use super::events::{Detail, EventLog, Kind, Subject};
use crate::source::supervise::StatusBoard;
use reconciler::SourceId;
use std::collections::HashMap;

/// What the loop last saw of each source: up or not, and its restarts.
pub(crate) struct SourceWatch {
    board: StatusBoard,
    seen: HashMap<SourceId, (bool, u32)>,
}

impl SourceWatch {
    /// Watches `board`, taking its statuses now as the known ones.
    pub(crate) fn new(board: StatusBoard) -> Self {
        let seen = board.statuses().into_iter().map(|(id, s)| (id, (s.up, s.restarts))).collect();
        Self { board, seen }
    }

    /// Completes when some source may have gone up or down.
    pub(crate) async fn changed(&self) {
        self.board.changed().await;
    }

    /// Records an event per change since the last look: a source that
    /// failed and came back in between gets both.
    pub(crate) fn note(&mut self, log: &mut EventLog) {
        for (id, status) in self.board.statuses() {
            let (was_up, restarts) = self.seen.insert(id.clone(), (status.up, status.restarts)).unwrap_or((true, 0));
            let failed_between = was_up && status.up && status.restarts > restarts;
            if (was_up && !status.up) || failed_between {
                let detail = Detail { error: status.last_error.clone(), ..Detail::default() };
                log.record(Kind::SourceDown, Subject::Source(id.0.clone()), detail);
            }
            if (!was_up && status.up) || failed_between {
                log.record(Kind::SourceUp, Subject::Source(id.0.clone()), Detail::default());
            }
        }
    }
}
