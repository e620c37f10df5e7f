//! Desired-state reconciliation for emperor.
//!
//! Sources describe what should run ([`Desired`]); the supervisor reports what
//! does ([`Actual`]); [`plan`] compares the two without any I/O and returns the
//! [`Action`]s that converge them. [`Controller`] wraps the plan with a dirty
//! set and respawn timers and applies actions through an [`Executor`].
#![forbid(unsafe_code)]

mod backoff;
mod controller;
mod model;
mod name;
mod plan;
pub mod rounds;
mod spec;

pub use backoff::{Backoff, BackoffPolicy};
pub use controller::{Controller, Executor, ReloadOutcome, StartError};
pub use model::{Actual, ActualVassal, Conflict, Desired, Phase, Snapshot};
pub use name::{
    add_extension, extension_of, is_extra_extension, ExtensionError, NameError, VassalName, EXTENSIONS, MAX_NAME_LEN,
};
pub use plan::{plan, plan_for, Action, ActionKind, Plan, Reason};
pub use spec::{ConfigRef, SourceId, VassalSpec};
