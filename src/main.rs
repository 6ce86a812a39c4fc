//! The binary: parse the command line, load the configuration, dispatch.

use std::process::ExitCode;

use clap::Parser as _;
use user_auth_service::cli::{self, Cli, Command};
use user_auth_service::config::{Config, redact};
use user_auth_service::events::Outbox;
use user_auth_service::server::{self, Application};
use user_auth_service::telemetry;

/// jemalloc rather than glibc's allocator: glibc kept what a load had freed in its per-thread
/// arenas (48 MB resident after the benchmark, against 20 MB at start), where jemalloc's
/// background threads give memory unused for a few seconds back to the system.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!(
                "configuration error: {}",
                redact::url_passwords(&error.to_string())
            );
            return ExitCode::from(2);
        }
    };
    // Errors are printed with the database's password masked: a driver's may quote the URL.
    let database_url = config.database_url.clone();
    telemetry::init(config.log_format);
    let now = time::OffsetDateTime::now_utc();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => server::open_store(&config)
            .await
            .map(|_| eprintln!("migrations applied"))
            .map_err(|error| format!("DATABASE_URL: {error}")),
        Command::Clients(command) => match cli::open_store(&config).await {
            Ok(store) => print(cli::clients(&store, command, now).await),
            Err(error) => Err(error),
        },
        Command::Users(command) => match cli::open_store(&config).await {
            Ok(store) => {
                let outbox = Outbox::new(&config.event_settings());
                print(cli::users(&store, &outbox, command, now).await)
            }
            Err(error) => Err(error),
        },
        Command::Keys(command) => keys(&config, command, now).await,
        Command::Events(command) => match cli::open_store(&config).await {
            Ok(store) => print(cli::events(&store, command, now).await),
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {}", database_url.mask(&message));
            ExitCode::FAILURE
        }
    }
}

/// A keys command: the key-encryption key is checked before the database is opened.
async fn keys(
    config: &Config,
    command: cli::KeysCommand,
    now: time::OffsetDateTime,
) -> Result<(), String> {
    config
        .require_shared_kek()
        .map_err(|error| error.to_string())?;
    let store = cli::open_store(config).await?;
    let ring = server::open_key_ring(config, store).map_err(|error| error.to_string())?;
    print(cli::keys(&ring, command, now).await)
}

/// Prints a command's JSON answer on stdout, for scripts.
fn print(answer: Result<serde_json::Value, String>) -> Result<(), String> {
    let value = answer?;
    println!("{value:#}");
    Ok(())
}

async fn serve(config: Config) -> Result<(), String> {
    // Before the port is bound: from the moment it answers, SIGTERM means a graceful stop.
    let shutdown = server::shutdown_signal();
    let app = Application::build(config)
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!(
        address = %app.local_addr(),
        management = %app.management_addr(),
        "listening"
    );
    app.run_until_stopped(shutdown)
        .await
        .map_err(|error| error.to_string())
}
