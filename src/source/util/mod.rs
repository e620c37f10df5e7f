//! Helpers every source family shares.

pub mod retry;
