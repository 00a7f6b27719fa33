//! Times one cold fit + 48-hour forecast of every series in a Steam-format
//! file (the issue's < 2 s target); run under `/usr/bin/time` to see CPU time.
//! Usage: fit_timing FILE

use warden_forecast::calendar::Calendar;
use warden_forecast::chain::ChainConfig;
use warden_forecast::cli::time_fit_forecast;
use warden_forecast::ingest::read_steam;

fn main() {
    let Some(file) = std::env::args().nth(1) else {
        eprintln!("usage: fit_timing STEAM_CSV");
        std::process::exit(2);
    };
    let result = read_steam(std::path::Path::new(&file)).and_then(|series| {
        let secs = time_fit_forecast(&series, &Calendar::german(), &ChainConfig::default())?;
        Ok((series.len(), secs))
    });
    match result {
        Ok((n, secs)) => println!("{n} series: fit + 48-h forecast in {secs:.3} s wall"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
