//! Fleets: many emperors sharing one source (a table, a collection).
//!
//! Each emperor has a name of its own in the fleet ([`host`]); what it
//! writes to a shared source carries that name. Vassals marked
//! `singleton = true` run on exactly one emperor of the fleet at a time,
//! under a lease held in the source ([`lease`]).

pub mod host;
pub mod lease;
