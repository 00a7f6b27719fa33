//! The `[node]` section: checked (roles, a capacity above 0, an address others can reach,
//! servers that fit), and resolved into the engine's node settings with its defaults.

use std::net::IpAddr;
use std::path::Path;

use warden_lifecycle::NodeSettings;
use warden_store::NodeRole;

use super::model::Config;
use super::spec::ServerSpec;
use super::ConfigError;

impl Config {
    /// Checks `[node]` and that every managed server fits a node that runs servers.
    pub(super) fn check_node(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let n = &self.node;
        if n.roles.get_ref().is_empty() {
            return Err(ConfigError::at(
                path,
                text,
                n.roles.span(),
                "node.roles is empty",
                "use [\"edge\", \"node\"] (the default), [\"edge\"] or [\"node\"]",
            ));
        }
        if *n.moves_at_once.get_ref() == 0 {
            return Err(ConfigError::at(
                path,
                text,
                n.moves_at_once.span(),
                "node.moves_at_once = 0 would never move a server off a draining node",
                "servers a drain moves at once; 1 (the default) disturbs the least",
            ));
        }
        if let Err(why) = consolidate_at(n.consolidate.get_ref()) {
            return Err(ConfigError::at(
                path,
                text,
                n.consolidate.span(),
                format!("node.consolidate = `{}`: {why}", n.consolidate.get_ref()),
                "a time of day in UTC like \"04:00\" (the default), or \"off\"",
            ));
        }
        if *n.link.get_ref() == super::model::LinkChoice::Quic {
            let listen = self.link.as_ref().and_then(|l| l.listen.as_ref());
            match listen {
                None => {
                    return Err(ConfigError::at(
                        path,
                        text,
                        n.link.span(),
                        "node.link = \"quic\" needs a [link] section with `listen` and this node's certificates",
                        "add [link] listen = \"0.0.0.0:25590\", ca, cert and key (see `warden ca init` and `warden cert issue --node ID`), or use link = \"tcp\"",
                    ))
                }
                Some(l) if l.get_ref().parse::<std::net::SocketAddr>().is_err() => {
                    return Err(ConfigError::at(
                        path,
                        text,
                        l.span(),
                        format!("link.listen = `{}` is not an address", l.get_ref()),
                        "an IP and a UDP port, e.g. \"0.0.0.0:25590\"",
                    ))
                }
                Some(_) => {}
            }
        }
        let runs = n.roles.get_ref().contains(&NodeRole::Node);
        if let Some(m) = &n.memory_gb {
            if !(m.get_ref().is_finite() && *m.get_ref() > 0.0) {
                return Err(ConfigError::at(
                    path,
                    text,
                    m.span(),
                    format!(
                        "node.memory_gb = {}: a node needs a capacity above 0",
                        m.get_ref()
                    ),
                    "the memory this machine gives its game servers, in GB, e.g. 30.0; leave it \
                     out for the machine's RAM less 1 GiB",
                ));
            }
            if runs {
                for s in &self.servers {
                    if s.runtime.is_some() && s.memory_gb > *m.get_ref() {
                        return Err(ConfigError::at(
                            path,
                            text,
                            s.id.span(),
                            format!(
                                "server `{}` needs memory_gb = {} but this node offers {} GB \
                                 (node.memory_gb)",
                                s.id.get_ref(),
                                s.memory_gb,
                                m.get_ref()
                            ),
                            "raise node.memory_gb, lower the server's memory_gb, or give this \
                             appliance roles = [\"edge\"] so a node with room runs it",
                        ));
                    }
                }
            }
        }
        if let Some(a) = &n.address {
            let addr = a.get_ref().trim();
            let bad = match addr.parse::<IpAddr>() {
                Ok(ip) => ip.is_unspecified() || ip.is_multicast(),
                Err(_) => {
                    addr.is_empty()
                        || addr.contains(':')
                        || addr.chars().any(|c| c.is_whitespace() || c == '/')
                }
            };
            if bad {
                return Err(ConfigError::at(
                    path,
                    text,
                    a.span(),
                    format!("node.address = `{addr}` is not an address other appliances can reach"),
                    "this machine's IP address (or host name) on the network the edges use, \
                     e.g. \"10.0.0.2\"; no port",
                ));
            }
        }
        Ok(())
    }

    /// The engine's node settings: the section with its defaults filled in. `servers` are
    /// the file's (the address defaults to the first one's backend host); `takeover` when
    /// this process upgrades a running one.
    pub fn node_settings(&self, servers: &[ServerSpec], takeover: bool) -> NodeSettings {
        let n = &self.node;
        let defaults = NodeSettings::default();
        let address = match &n.address {
            Some(a) => a.get_ref().trim().to_string(),
            None => servers
                .iter()
                .filter_map(|s| s.route.backend.rsplit_once(':'))
                .filter_map(|(host, _)| host.trim_matches(['[', ']']).parse::<IpAddr>().ok())
                .find(|ip| !ip.is_unspecified())
                .map_or(defaults.address, |ip| ip.to_string()),
        };
        NodeSettings {
            roles: n.roles.get_ref().clone(),
            memory_gb: n
                .memory_gb
                .as_ref()
                .map_or(defaults.memory_gb, |m| *m.get_ref()),
            enforce_capacity: n.memory_gb.is_some(),
            address,
            labels: n.labels.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            takeover,
            dead_after: n.recover.then_some(n.dead_after),
            moves_at_once: *n.moves_at_once.get_ref(),
            consolidate_at: consolidate_at(n.consolidate.get_ref()).unwrap_or(None),
            link_port: self.link_port(),
        }
    }
}

impl Config {
    /// The UDP port this node offers links on, when `[node] link = "quic"`.
    pub fn link_port(&self) -> Option<u16> {
        if *self.node.link.get_ref() != super::model::LinkChoice::Quic {
            return None;
        }
        let listen = self.link.as_ref()?.listen.as_ref()?;
        listen
            .get_ref()
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| a.port())
    }
}

/// `"HH:MM"` as seconds after midnight, `"off"` as None.
fn consolidate_at(text: &str) -> Result<Option<u32>, String> {
    if text.trim() == "off" {
        return Ok(None);
    }
    let (h, m) = text
        .trim()
        .split_once(':')
        .ok_or_else(|| "not a time of day".to_string())?;
    let (h, m): (u32, u32) = match (h.parse(), m.parse()) {
        (Ok(h), Ok(m)) if h < 24 && m < 60 => (h, m),
        _ => return Err("not a time of day (00:00 to 23:59)".into()),
    };
    Ok(Some(h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::super::{check, parse};
    use std::path::Path;

    fn err(text: &str) -> String {
        parse(Path::new("warden.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn node_keys_are_checked_with_line_and_hint() {
        for (text, line, says) in [
            ("[node]\nroles = []\n", 2, "node.roles is empty"),
            ("[node]\nroles = [\"nod\"]\n", 2, "unknown variant"),
            ("\n[node]\nmemory_gb = 0.0\n", 3, "capacity above 0"),
            ("[node]\naddress = \"0.0.0.0\"\n", 2, "can reach"),
            ("[node]\naddress = \"10.0.0.2:25565\"\n", 2, "can reach"),
            ("[node]\nmoves_at_once = 0\n", 2, "never move"),
            ("[node]\nconsolidate = \"25:00\"\n", 2, "not a time of day"),
            (
                "[node]\nconsolidate = \"nightly\"\n",
                2,
                "not a time of day",
            ),
            ("[node]\ndead_after = \"soon\"\n", 2, "expected a duration"),
        ] {
            let e = err(text);
            assert!(e.starts_with(&format!("warden.toml:{line}:")), "{e}");
            assert!(e.contains(says) && e.contains("hint:"), "{e}");
        }
        let big = "[node]\nmemory_gb = 2.0\n[[servers]]\nid = \"big\"\nhosts = [\"b.test\"]\n\
                   backend = \"127.0.0.1:25570\"\nmemory_gb = 8.0\n\
                   runtime = { kind = \"process\", command = [\"x\"], dir = \"/tmp/x\" }\n";
        let e = err(big);
        assert!(
            e.starts_with("warden.toml:4:") && e.contains("offers 2 GB"),
            "{e}"
        );
        // An edge-only appliance does not run it: a node with room does.
        let edge = big.replace("[node]\n", "[node]\nroles = [\"edge\"]\n");
        parse(Path::new("warden.toml"), &edge).unwrap();
    }

    #[test]
    fn defaults_come_from_the_machine_and_the_first_backend() {
        let text = "[[servers]]\nid = \"a\"\nhosts = [\"a.test\"]\nbackend = \"10.1.2.3:25570\"\n";
        let (cfg, file) = check(Path::new("warden.toml"), text).unwrap();
        let n = cfg.node_settings(&file.servers, false);
        assert_eq!(n.address, "10.1.2.3");
        assert_eq!(n.roles.len(), 2);
        assert!(
            n.memory_gb > 0.0 && !n.enforce_capacity,
            "a single box is not held back"
        );
        let (cfg, file) = check(Path::new("warden.toml"), "").unwrap();
        assert_eq!(cfg.node_settings(&file.servers, true).address, "127.0.0.1");
        let text =
            "[node]\naddress = \"node-b.lan\"\nmemory_gb = 12.5\nlabels = { zone = \"a\" }\n";
        let (cfg, file) = check(Path::new("warden.toml"), text).unwrap();
        let n = cfg.node_settings(&file.servers, false);
        assert_eq!((n.address.as_str(), n.memory_gb), ("node-b.lan", 12.5));
        assert!(n.enforce_capacity);
        assert_eq!(n.labels["zone"], "a");
        assert_eq!(
            n.consolidate_at,
            Some(4 * 3600),
            "nightly at 04:00 UTC by default"
        );
        let (cfg, file) =
            check(Path::new("warden.toml"), "[node]\nconsolidate = \"off\"\n").unwrap();
        assert_eq!(cfg.node_settings(&file.servers, false).consolidate_at, None);
    }
}
