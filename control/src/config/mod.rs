//! The appliance's configuration file (TOML).
//!
//! Loading is all-or-nothing: a file either becomes a complete, checked [`Config`] or a
//! [`ConfigError`] that names the file, line and column and suggests a fix. On reload the
//! running snapshot is only replaced by a config that passed every check.

mod error;
mod model;
mod snapshot;

use std::path::Path;

pub use error::ConfigError;
pub use model::*;
pub use snapshot::Discovered;

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
    parse(path, &text)
}

/// Parses and checks config text (`path` is only used in messages and for relative paths).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let config: Config =
        toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
    // Building the snapshot runs every semantic check (hosts, backends, favicons).
    config.snapshot(path, text)?;
    Ok(config)
}
