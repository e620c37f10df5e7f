//! Helpers every source family shares.

pub mod hash;
pub mod path;
pub mod percent;
pub mod retry;
pub mod seconds;
pub mod secret;
