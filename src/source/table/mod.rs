//! Table sources (`pg://`, `mongodb://`): a query whose rows are vassals,
//! re-run when the server says something changed, published as complete
//! snapshots.

pub mod mongodb;
pub mod pg;
pub mod rows;
