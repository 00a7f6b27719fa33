//! The routing table: exact names in a hash map, wildcard patterns in a label trie, and
//! what to do with hosts that match neither.

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;

use super::server::Server;
use super::wildcard::WildcardTrie;

/// What happens to a player whose host matches no route.
#[derive(Debug, Clone, PartialEq)]
pub enum UnknownHost {
    /// Close without a byte: scanners learn nothing.
    Drop,
    /// Send them to this server.
    Default(Arc<Server>),
}

/// A lookup result: the server and the concrete backend address for this host.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub server: Arc<Server>,
    pub backend: Arc<str>,
}

#[derive(Debug)]
pub struct RouteTable {
    exact: HashMap<Box<str>, Arc<Server>>,
    wildcards: WildcardTrie<Arc<Server>>,
    unknown: UnknownHost,
    servers: Vec<Arc<Server>>,
    hosts: Vec<(String, Arc<Server>)>,
}

#[derive(Debug, Error, PartialEq)]
pub enum TableError {
    #[error("host `{host}` is claimed by both `{first}` and `{second}`")]
    DuplicateHost {
        host: String,
        first: String,
        second: String,
    },
    #[error("host pattern `{0}`: `*` must stand for a whole label, e.g. `*.play.example.com`")]
    BadPattern(String),
    #[error("backend `{backend}` uses `{{{index}}}` but its host pattern has only {captures} `*`")]
    BadPlaceholder {
        backend: String,
        index: usize,
        captures: usize,
    },
}

/// Collects routes and checks them before a table is built.
#[derive(Default)]
pub struct RouteTableBuilder {
    exact: HashMap<Box<str>, Arc<Server>>,
    wildcards: WildcardTrie<Arc<Server>>,
    wildcard_owner: HashMap<String, String>,
    servers: Vec<Arc<Server>>,
    hosts: Vec<(String, Arc<Server>)>,
}

impl RouteTableBuilder {
    /// Adds a server under each of its host names or patterns (already normalized).
    pub fn add(&mut self, server: Server, hosts: &[String]) -> Result<(), TableError> {
        let server = Arc::new(server);
        for host in hosts {
            if host.contains('*') {
                self.add_pattern(host, &server)?;
            } else if let Some(prev) = self.exact.insert(host.as_str().into(), server.clone()) {
                return Err(TableError::DuplicateHost {
                    host: host.clone(),
                    first: prev.id.to_string(),
                    second: server.id.to_string(),
                });
            }
        }
        self.hosts
            .extend(hosts.iter().map(|h| (h.clone(), server.clone())));
        self.servers.push(server);
        Ok(())
    }

    /// Whether a host name or pattern is already claimed.
    pub fn claims(&self, host: &str) -> bool {
        self.exact.contains_key(host) || self.wildcard_owner.contains_key(host)
    }

    fn add_pattern(&mut self, pattern: &str, server: &Arc<Server>) -> Result<(), TableError> {
        let stars = pattern.split('.').filter(|l| *l == "*").count();
        if pattern
            .split('.')
            .any(|l| l.is_empty() || (l.contains('*') && l != "*"))
        {
            return Err(TableError::BadPattern(pattern.into()));
        }
        for index in placeholders(&server.backend) {
            if index == 0 || index > stars {
                return Err(TableError::BadPlaceholder {
                    backend: server.backend.clone(),
                    index,
                    captures: stars,
                });
            }
        }
        if let Some(first) = self
            .wildcard_owner
            .insert(pattern.into(), server.id.to_string())
        {
            return Err(TableError::DuplicateHost {
                host: pattern.into(),
                first,
                second: server.id.to_string(),
            });
        }
        self.wildcards.insert(pattern, server.clone());
        Ok(())
    }

    pub fn build(self, unknown: UnknownHost) -> RouteTable {
        RouteTable {
            exact: self.exact,
            wildcards: self.wildcards,
            unknown,
            servers: self.servers,
            hosts: self.hosts,
        }
    }
}

impl RouteTable {
    /// Looks up a normalized host. Exact names win over patterns; unknown hosts fall back
    /// to the default server or to `None` (drop).
    pub fn lookup(&self, host: &str) -> Option<Resolved> {
        if let Some(server) = self.exact.get(host) {
            return Some(Resolved {
                backend: Arc::from(server.backend.as_str()),
                server: server.clone(),
            });
        }
        if let Some((server, captures)) = self.wildcards.lookup(host) {
            return Some(Resolved {
                backend: Arc::from(fill(&server.backend, &captures).as_str()),
                server: server.clone(),
            });
        }
        match &self.unknown {
            UnknownHost::Drop => None,
            UnknownHost::Default(server) => Some(Resolved {
                backend: Arc::from(server.backend.as_str()),
                server: server.clone(),
            }),
        }
    }

    /// Every server in the table, in config order.
    pub fn servers(&self) -> &[Arc<Server>] {
        &self.servers
    }

    /// Every host name and pattern with its server, in the order they were added.
    pub fn hosts(&self) -> &[(String, Arc<Server>)] {
        &self.hosts
    }

    /// The server unknown hosts go to, if any.
    pub fn fallback(&self) -> Option<&Arc<Server>> {
        match &self.unknown {
            UnknownHost::Drop => None,
            UnknownHost::Default(s) => Some(s),
        }
    }

    pub fn server(&self, id: &str) -> Option<&Arc<Server>> {
        self.servers.iter().find(|s| &*s.id == id)
    }

    /// An empty table that drops everything (used before the first config loads).
    pub fn empty() -> Self {
        RouteTableBuilder::default().build(UnknownHost::Drop)
    }
}

/// The `{n}` indices used in a backend template.
fn placeholders(template: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        if let Ok(n) = after[..close].parse::<usize>() {
            out.push(n);
        }
        rest = &after[close + 1..];
    }
    out
}

/// Replaces `{n}` with the n-th capture (1-based).
fn fill(template: &str, captures: &[&str]) -> String {
    let mut out = template.to_string();
    for (i, cap) in captures.iter().enumerate() {
        out = out.replace(&format!("{{{}}}", i + 1), cap);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let mut b = RouteTableBuilder::default();
        b.add(
            Server::new("survival", "127.0.0.1:25570"),
            &["survival.play.example.com".into(), "mc.example.org".into()],
        )
        .unwrap();
        b.add(
            Server::new("nodes", "{1}.nodes.internal:25565"),
            &["*.play.example.com".into()],
        )
        .unwrap();
        b.build(UnknownHost::Drop)
    }

    #[test]
    fn exact_wildcard_unknown() {
        let t = table();
        assert_eq!(
            &*t.lookup("survival.play.example.com").unwrap().server.id,
            "survival"
        );
        assert_eq!(
            &*t.lookup("mc.example.org").unwrap().backend,
            "127.0.0.1:25570"
        );
        let w = t.lookup("creative.play.example.com").unwrap();
        assert_eq!(&*w.server.id, "nodes");
        assert_eq!(&*w.backend, "creative.nodes.internal:25565");
        assert!(t.lookup("unknown.example.net").is_none());
    }

    #[test]
    fn default_route() {
        let mut b = RouteTableBuilder::default();
        b.add(Server::new("a", "127.0.0.1:1"), &["a.test".into()])
            .unwrap();
        let t = b.build(UnknownHost::Default(Arc::new(Server::new(
            "lobby",
            "127.0.0.1:2",
        ))));
        assert_eq!(&*t.lookup("nope.test").unwrap().server.id, "lobby");
    }

    #[test]
    fn rejects_conflicts_and_bad_patterns() {
        let mut b = RouteTableBuilder::default();
        b.add(Server::new("a", "x:1"), &["a.test".into()]).unwrap();
        assert!(matches!(
            b.add(Server::new("b", "x:1"), &["a.test".into()]),
            Err(TableError::DuplicateHost { .. })
        ));
        assert!(matches!(
            b.add(Server::new("c", "x:1"), &["a*.test".into()]),
            Err(TableError::BadPattern(_))
        ));
        assert!(matches!(
            b.add(Server::new("d", "{2}.x:1"), &["*.test".into()]),
            Err(TableError::BadPlaceholder { index: 2, .. })
        ));
    }
}
