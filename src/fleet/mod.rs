//! Fleets: many emperors, one per host, sharing their sources.
//!
//! An emperor of a fleet has a name ([`host::host_name`]) that it uses in
//! everything it writes to a fleet's sources. [`status`] writes what runs on
//! this host back to a table or collection next to the vassal source, so an
//! operator sees the whole fleet with one query. Vassals marked
//! `singleton = true` run on exactly one emperor of the fleet at a time,
//! under a lease held in the source ([`lease`]).

pub mod host;
pub mod lease;
pub mod status;
