//! The monitoring servers the command line asks for: `--http` (metrics and
//! status) and `--stats` (uWSGI's stats object). They are bound first thing,
//! before any vassal is touched: one that cannot listen stops the emperor
//! from starting (the operator asked for it, and a monitoring system would
//! otherwise only see it missing).

use crate::cli::Cli;
use crate::control::{self, Counters, Listener, StatsContext, StatusContext};
use tokio::task::JoinHandle;

/// The bound listeners, not yet served.
pub(super) struct Bound {
    http: Option<Listener>,
    stats: Option<Listener>,
}

/// Binds the listeners `cli` asks for.
pub(super) async fn bind(cli: &Cli) -> Result<Bound, control::ListenError> {
    let http = match &cli.http {
        Some(addr) => Some(Listener::bind("--http", addr).await?),
        None => None,
    };
    let stats = match &cli.stats {
        Some(addr) => Some(Listener::bind("--stats", addr).await?),
        None => None,
    };
    Ok(Bound { http, stats })
}

impl Bound {
    /// Serves each listener on a task of its own; abort the tasks to stop.
    pub(super) fn spawn(self, cli: &Cli, context: &control::Context, counters: &Counters) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(listener) = self.http {
            let status = StatusContext::new(context.clone(), counters.clone(), cli.metrics_per_vassal);
            tasks.push(tokio::spawn(control::serve_http(listener, status)));
        }
        if let Some(listener) = self.stats {
            tasks.push(tokio::spawn(control::serve_stats(listener, StatsContext::new(context))));
        }
        tasks
    }
}
