//! Starts the monitoring servers the command line asks for: `--http`
//! (metrics and status) and `--stats` (uWSGI's stats object). A server
//! that cannot listen stops the emperor from starting: the operator asked
//! for it, and a monitoring system would otherwise just see it missing.

use crate::cli::Cli;
use crate::control::{self, Counters, Listener, StatsContext, StatusContext};
use tokio::task::JoinHandle;

/// Binds and spawns the servers; returns their tasks (abort them to stop).
pub(super) async fn start(
    cli: &Cli,
    context: &control::Context,
    counters: &Counters,
) -> Result<Vec<JoinHandle<()>>, control::ListenError> {
    let mut tasks = Vec::new();
    if let Some(addr) = &cli.http {
        let listener = Listener::bind("--http", addr).await?;
        let status = StatusContext::new(context.clone(), counters.clone(), cli.metrics_per_vassal);
        tasks.push(tokio::spawn(control::serve_http(listener, status)));
    }
    if let Some(addr) = &cli.stats {
        let listener = Listener::bind("--stats", addr).await?;
        tasks.push(tokio::spawn(control::serve_stats(listener, StatsContext::new(context))));
    }
    Ok(tasks)
}
