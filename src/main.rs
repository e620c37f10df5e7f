//! The `emperor` binary: parses the command line, sets up logging and runs
//! the library's [`emperor::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os();
    let first = args.nth(1);
    if first.as_ref().is_some_and(|first| first == "ctl") {
        return emperor::control::client::main(std::iter::once("emperor ctl".into()).chain(args));
    }
    if first.is_some_and(|first| first == emperor::supervisor::OWN_PID_SHIM) {
        return emperor::supervisor::exec_with_own_pid(args);
    }
    emperor::prepare_process();
    let cli = emperor::cli::Cli::parse();
    // The ZooKeeper client logs a warning per reconnect attempt; the source
    // reports an outage itself, once, so the client's own lines stay at error
    // unless the filter names it.
    let quiet = if cli.log_level.contains("zookeeper_client") { "" } else { ",zookeeper_client=error" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{}{quiet}", cli.log_level)));
    let logger = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        emperor::cli::LogFormat::Json => logger.event_format(emperor::json_log::JsonFormat).init(),
        emperor::cli::LogFormat::Text => {
            logger.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
        }
    }
    match emperor::run(cli, std::future::pending()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emperor: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
