//! The vassal records the supervisor writes to the state store, and their
//! catching up after an outage of the store (a full disk): a record that
//! could not be written is written again once the store takes writes, so
//! that a vassal respawned meanwhile is re-adopted after an emperor crash
//! rather than replaced.

use super::executor::mode_of;
use super::Supervisor;
use reconciler::{VassalName, VassalSpec};
use state::{Intent, Mode, VassalRecord};
use std::time::{Duration, Instant};

/// How often records that could not be written are tried again.
const RETRY: Duration = Duration::from_secs(1);

impl Supervisor {
    /// Writes a vassal's record (not yet durable), with its process's
    /// identity (pid and start time) if one runs; a failure is reported
    /// once per outage of the store.
    pub(super) fn record(
        &mut self,
        spec: &VassalSpec,
        generation: u64,
        mode: Mode,
        process: Option<(i32, Option<u64>)>,
        intent: Intent,
    ) -> Result<(), state::StateError> {
        let record = VassalRecord {
            name: spec.name.clone(),
            source: spec.source.clone(),
            version: spec.version.clone(),
            generation,
            mode,
            pid: process.map(|(pid, _)| pid),
            start_time: process.and_then(|(_, start_time)| start_time),
            intent,
        };
        let written = self.store.put_vassal(&record);
        match &written {
            Ok(()) => {
                self.stale_records.remove(&spec.name);
            }
            Err(e) => {
                crate::store_outage::write_failed(&self.store, "vassal record", e);
                if self.stale_records.insert(spec.name.clone()) && self.stale_retry_at.is_none() {
                    self.stale_retry_at = Some(Instant::now() + RETRY);
                }
            }
        }
        written
    }

    /// Whether the store holds a record of `name` (of any generation).
    pub(super) fn is_recorded(&self, name: &VassalName) -> bool {
        self.store.vassal(name).ok().flatten().is_some()
    }

    /// Writes again the records of running vassals that could not be
    /// written, and makes them durable; what still fails waits for the
    /// next retry.
    pub(super) fn rewrite_stale_records(&mut self) {
        self.stale_retry_at = None;
        let names: Vec<VassalName> = self.stale_records.drain().collect();
        for name in &names {
            let Some(proc) = self.procs.get(name) else { continue };
            let intent = if proc.state.is_stopping() { Intent::Stop } else { Intent::Run };
            let (spec, generation, process, mode) =
                (proc.spec.clone(), proc.generation, proc.identity(), mode_of(&proc.launch));
            let _ = self.record(&spec, generation, mode, Some(process), intent);
        }
        if self.stale_records.is_empty() {
            tracing::info!(records = names.len(), "vassal records written again after the state store outage");
        }
        match self.store.flush_if_written() {
            Ok(true) => crate::store_outage::write_succeeded(&self.store),
            Ok(false) => {}
            Err(e) => crate::store_outage::write_failed(&self.store, "flush", &e),
        }
    }
}
