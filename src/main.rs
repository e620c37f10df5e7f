//! `emperor`: keeps vassals running from declared config sources.

mod cli;
mod emperor;
mod failpoint;
mod source;
mod supervisor;
mod vassal;

use anyhow::Context;
use clap::Parser;

fn main() -> std::process::ExitCode {
    supervisor::cloexec_inherited_fds();
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emperor: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    if let Some(socket) = &cli.fd_holder {
        return supervisor::serve_fd_holder(socket).with_context(|| format!("fd holder on {}", socket.display()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(emperor::run(cli))
}
