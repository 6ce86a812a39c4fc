//! The binary: parse the command line, load the configuration, dispatch.

use std::process::ExitCode;

use clap::Parser as _;
use user_auth_service::cli::{Cli, Command};
use user_auth_service::config::Config;
use user_auth_service::server::{self, Application};
use user_auth_service::telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => server::open_store(&config)
            .await
            .map(|_| eprintln!("migrations applied"))
            .map_err(|error| format!("DATABASE_URL: {error}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let app = Application::build(config)
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!(address = %app.local_addr(), "listening");
    app.run_until_stopped(server::shutdown_signal())
        .await
        .map_err(|error| error.to_string())
}
