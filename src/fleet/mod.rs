//! Fleets: many emperors, one per host, sharing their sources.
//!
//! An emperor of a fleet has a name ([`host::host_name`]) that it uses in
//! everything it writes to a fleet's sources. [`status`] writes what runs on
//! this host back to a table or collection next to the vassal source, so an
//! operator sees the whole fleet with one query.

pub mod host;
pub mod status;
