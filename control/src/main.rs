//! The `warden` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Edge appliance for Minecraft Java hosting"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Take the listening sockets over from a running warden (then send it SIGQUIT).
        #[arg(long, short)]
        upgrade: bool,
    },
    /// Restart a server without disconnecting its players (warm swap through the anteroom).
    Restart {
        id: String,
        /// Start the replacement on this image (Docker servers): an upgrade. If it does not
        /// come up, the previous image runs again. Put it in the config as well, or the next
        /// container Warden creates after its own restart uses the config's image.
        #[arg(long)]
        image: Option<String>,
        /// The running appliance's config (to find its admin socket).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Demand forecast: evaluate the model, replay traces through provisioning policies.
    Forecast {
        #[command(subcommand)]
        command: warden_forecast::cli::ForecastCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and check a config file; prints the problem with file, line and a hint.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config, upgrade } => warden_control::appliance::run(&config, upgrade),
        Command::Restart { id, config, image } => warden_control::config::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|cfg| {
                let socket = warden_control::admin::socket_path(&cfg.store.path);
                let request = match image {
                    Some(i) => format!("restart {id} {i}"),
                    None => format!("restart {id}"),
                };
                warden_control::admin::request(&socket, &request)
            })
            .map(|answer| println!("{answer}")),
        Command::Forecast { command } => {
            warden_forecast::cli::run(command).map_err(anyhow::Error::from)
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match warden_control::config::load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} servers, {} wildcard routes)",
                    file.display(),
                    cfg.servers.len(),
                    cfg.routes.len()
                );
                Ok(())
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::from(1)
        }
    }
}
