//! The appliance's configuration file (TOML).
//!
//! Loading is all-or-nothing: a file either becomes a complete, checked [`Config`] or a
//! [`ConfigError`] that names the file, line and column and suggests a fix. On reload the
//! running snapshot is only replaced by a config that passed every check. A checked file's
//! servers are [`ServerSpec`]s, the model the API's and Docker's servers share.

mod error;
mod model;
mod node;
mod snapshot;
mod spec;

use std::path::Path;

pub use error::ConfigError;
pub use model::*;
pub use spec::{FileServers, Managed, RuntimeSpec, ServerSpec};

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
    parse(path, &text)
}

/// Parses and checks config text (`path` is only used in messages and for relative paths).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    check(path, text).map(|(config, _)| config)
}

/// [`parse`], also returning the file's servers as the inventory takes them.
pub fn check(path: &Path, text: &str) -> Result<(Config, FileServers), ConfigError> {
    let mut config: Config =
        toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
    if let Some(c) = &mut config.capacity {
        // Files named in [capacity] are relative to the config file, like favicons.
        let dir = path.parent().unwrap_or(Path::new("."));
        c.template.user_data = dir.join(&c.template.user_data);
        c.seed = c.seed.as_ref().map(|s| dir.join(s));
        c.check().map_err(|e| {
            ConfigError::general(path, e.to_string(), "see `[capacity]` in the README")
        })?;
    }
    // Building the servers runs every semantic check (hosts, backends, favicons).
    let servers = config.file_servers(path, text)?;
    Ok((config, servers))
}
