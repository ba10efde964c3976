//! The `twofold` binary: parse flags, set up logging, run the command.

use clap::Parser;
use tracing_subscriber::EnvFilter;
use twofold_server::cli::{self, Cli, Command};

fn init_logging(format: &str, level: &str) {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // The PostgreSQL driver logs each statement with its parameters (hashes, addresses, phone
    // numbers) at debug level, and the server's notices ("relation … already exists,
    // skipping") at info: only a filter that names it explicitly turns those on.
    if !level.contains("tokio_postgres") {
        if let Ok(quiet) = "tokio_postgres=warn".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (config, warnings) = match cli::load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("twofold: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Commands other than serve keep quiet so their stdout can be scripted.
    let level = if matches!(cli.command, Command::Serve { .. }) {
        config.log_level.clone()
    } else {
        "warn".to_string()
    };
    init_logging(&config.log_format, &level);
    for w in warnings {
        tracing::warn!("{w}");
    }
    match cli::run(cli, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twofold: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
