//! `warden forecast …` without building the whole appliance: the same
//! subcommands the `warden` binary mounts, for working on this crate alone.
//! Usage: forecast eval|simulate ARGS (see `forecast --help`).

use clap::Parser;
use warden_forecast::cli::{run, ForecastCommand};

#[derive(Parser)]
#[command(name = "forecast")]
struct Top {
    #[command(subcommand)]
    cmd: ForecastCommand,
}

fn main() {
    if let Err(e) = run(Top::parse().cmd) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
