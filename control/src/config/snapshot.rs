//! Turning a parsed config into its servers and the data plane's settings, checking
//! meaning as it goes: addresses parse, hosts are claimed once, wildcards are well formed,
//! favicons are PNGs (read here, once), the store and archive have what their kind needs,
//! and no backend is one of Warden's own listeners (a routing loop).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use toml::Spanned;
use warden_proxy::limits::LimitSettings;
use warden_proxy::loopguard::backend_points_at;
use warden_proxy::route::{RouteTableBuilder, Server, StatusTexts, TableError, UnknownHost};
use warden_proxy::settings::EdgeSettings;
use warden_proxy::wire::normalize_host;

use super::model::{
    parse_cidr, ArchiveKind, Config, MotdConfig, StoreKind, StoreSection, MIN_SESSION_RETENTION,
};
use super::spec::{FileServers, Managed, RuntimeSpec, ServerSpec};
use super::ConfigError;

/// Largest favicon accepted; vanilla's are a few KiB.
const MAX_FAVICON_BYTES: u64 = 64 * 1024;
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
/// Longest path a Unix socket can be bound to (`sun_path` less the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// What a config error about a self-pointing backend suggests.
const LOOP_HINT: &str = "a backend is the game server's own address, e.g. \"127.0.0.1:25570\"; \
                         pointing it at Warden sends every join around in a loop";

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    /// Warden's own listeners, by config key.
    own: Vec<(&'static str, SocketAddr)>,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        msg: impl Into<String>,
        hint: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError::at(self.path, self.text, span, msg, hint))
    }

    /// The config key of the own listener `backend` points at, if it does.
    fn own_listener(&self, backend: &str) -> Option<&'static str> {
        self.own
            .iter()
            .find(|(_, l)| backend_points_at(std::slice::from_ref(l), backend))
            .map(|(key, _)| *key)
    }
}

impl Config {
    /// Listen addresses of the edge, checked.
    pub fn listen_addrs(&self) -> Vec<String> {
        self.edge.listen.addrs()
    }

    /// Every address Warden itself listens on (edge, API, metrics), by config key. No
    /// backend may be one of them.
    pub fn own_listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let api = self.api.iter().map(|a| ("api.listen", a.listen.clone()));
        self.edge
            .listen
            .addrs()
            .into_iter()
            .map(|a| ("edge.listen", a))
            .chain(api)
            .chain(std::iter::once((
                "metrics.listen",
                self.metrics.listen.clone(),
            )))
            .filter_map(|(key, a)| Some((key, a.parse().ok()?)))
            .collect()
    }

    /// Checks the file's meaning and builds its servers, routes and edge settings, or says
    /// what is wrong and where.
    pub fn file_servers(&self, path: &Path, text: &str) -> Result<FileServers, ConfigError> {
        let cx = Ctx {
            path,
            text,
            own: self.own_listeners(),
        };
        for addr in self.edge.listen.addrs() {
            if addr.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::general(
                    path,
                    format!("edge.listen: `{addr}` is not an address"),
                    "use ip:port, e.g. \"0.0.0.0:25565\" or \"[::]:25565\"",
                ));
            }
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::general(
                path,
                format!(
                    "metrics.listen: `{}` is not an address",
                    self.metrics.listen
                ),
                "use ip:port, e.g. \"127.0.0.1:9940\", or \"\" to disable",
            ));
        }
        let m = &self.metrics;
        check_http_limits(
            path,
            "metrics",
            [m.max_connections, m.max_connections_per_source],
            [m.idle_timeout, m.request_timeout],
        )?;
        if let Some(api) = &self.api {
            check_api(path, api)?;
        }
        self.check_node(path, text)?;
        if self.store.session_retention < MIN_SESSION_RETENTION {
            return Err(ConfigError::general(
                path,
                "store.session_retention is shorter than 1 hour",
                "use e.g. \"30d\" (the default) or \"90d\"",
            ));
        }
        let sock = crate::upgrade_sock::path(self);
        if sock.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ConfigError::general(
                path,
                format!(
                    "the upgrade socket {} is longer than a Unix socket path may be ({MAX_SOCKET_PATH} bytes)",
                    sock.display()
                ),
                "set edge.upgrade_sock to a shorter path, or use a shorter store.path",
            ));
        }
        for w in &self.webhooks {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(ConfigError::general(
                    path,
                    format!("webhooks: url `{}` is not an http(s) URL", w.url),
                    "use e.g. \"https://discord.com/api/webhooks/…\"",
                ));
            }
        }
        check_sentinels(&cx, &self.store)?;
        if let Err(why) = self.store.store_config() {
            return cx.err(
                self.store.kind.span(),
                why,
                "add url = \"redis://127.0.0.1:6379\" to [store], or use kind = \"embedded\"",
            );
        }
        if *self.archive.kind.get_ref() == ArchiveKind::S3 {
            if let Err(why) = self.archive.s3_keys() {
                return cx.err(
                    self.archive.kind.span(),
                    why,
                    "an S3 archive needs endpoint, bucket, access_key_env and secret_key_env \
                     (see examples/warden.toml)",
                );
            }
        }
        if let Err(why) = self.backup.settings() {
            return cx.err(
                self.backup.every.span(),
                why,
                "a duration of at least a minute, e.g. \"6h\" (the default) or \"30m\"",
            );
        }
        if let Err(why) = self.archive.bytes_per_sec() {
            return Err(ConfigError::general(
                path,
                why,
                "MiB per second, e.g. 100; leave it out for no limit",
            ));
        }
        let mut trusted = Vec::new();
        for cidr in &self.edge.trusted_proxies {
            match parse_cidr(cidr.get_ref()) {
                Some(net) => trusted.push(net),
                None => {
                    return cx.err(
                        cidr.span(),
                        format!("`{}` is not a network", cidr.get_ref()),
                        "use CIDR notation, e.g. \"10.0.0.0/8\" or \"2001:db8::/32\"",
                    )
                }
            }
        }

        let mut builder = RouteTableBuilder::default();
        let mut servers: Vec<(Spanned<String>, Server)> = Vec::new();
        let mut specs = Vec::new();
        let mut routes = Vec::new();
        for sc in &self.servers {
            let server = self.server(&cx, &sc.id, &sc.backend, false, &sc.motd, |s| {
                s.rewrite_host = sc.rewrite_host.clone();
                s.proxy_protocol = sc.proxy_protocol;
                s.accepts_transfers = sc.accepts_transfers;
            })?;
            if servers
                .iter()
                .any(|(id, _)| id.get_ref() == sc.id.get_ref())
            {
                return cx.err(
                    sc.id.span(),
                    format!("server id `{}` is used twice", sc.id.get_ref()),
                    "give every [[servers]] entry its own id",
                );
            }
            if sc.hosts.is_empty() {
                return cx.err(
                    sc.id.span(),
                    format!("server `{}` has no hosts", sc.id.get_ref()),
                    "add hosts = [\"name.example.com\"]",
                );
            }
            for (node, addr) in &sc.node_backends {
                if addr.parse::<SocketAddr>().is_err() {
                    return cx.err(
                        sc.id.span(),
                        format!(
                            "server `{}`: node_backends.{node} = `{addr}` is not an address",
                            sc.id.get_ref()
                        ),
                        "use ip:port, e.g. node_backends = { edge-2 = \"10.0.0.2:25566\" }",
                    );
                }
                if let Some(key) = cx.own_listener(addr) {
                    return cx.err(
                        sc.id.span(),
                        format!(
                            "server `{}`: node_backends.{node} = `{addr}` is this Warden's own {key}",
                            sc.id.get_ref()
                        ),
                        LOOP_HINT,
                    );
                }
            }
            let hosts = self.hosts(&cx, &sc.hosts)?;
            add(&cx, &mut builder, server.clone(), &hosts, &sc.hosts)?;
            servers.push((sc.id.clone(), server.clone()));
            specs.push(ServerSpec {
                route: server,
                hosts,
                managed: sc.runtime.clone().map(|runtime| Managed {
                    runtime: RuntimeSpec::Owned(runtime),
                    rcon: sc.rcon.clone(),
                    sleep_after: sc.sleep_after,
                    archive_after: sc.archive_after,
                    start_timeout: sc.start_timeout,
                    stop_timeout: sc.stop_timeout,
                    memory_gb: sc.memory_gb,
                    node_backends: sc.node_backends.clone(),
                    anywhere: false,
                    node_labels: Default::default(),
                }),
            });
        }
        for rc in &self.routes {
            let id = rc.id.clone().unwrap_or_else(|| rc.host.clone());
            let server = self.server(&cx, &id, &rc.backend, true, &rc.motd, |s| {
                s.rewrite_host = rc.rewrite_host.clone();
                s.proxy_protocol = rc.proxy_protocol;
                s.accepts_transfers = rc.accepts_transfers;
            })?;
            let hosts = self.hosts(&cx, std::slice::from_ref(&rc.host))?;
            add(
                &cx,
                &mut builder,
                server.clone(),
                &hosts,
                std::slice::from_ref(&rc.host),
            )?;
            routes.push(ServerSpec {
                route: server,
                hosts,
                managed: None,
            });
        }
        let unknown = match self.edge.unknown_host.get_ref().as_str() {
            "drop" => UnknownHost::Drop,
            id => match servers.iter().find(|(sid, _)| sid.get_ref() == id) {
                Some((_, s)) => UnknownHost::Default(Arc::new(s.clone())),
                None => {
                    return cx.err(
                        self.edge.unknown_host.span(),
                        format!("unknown_host names `{id}`, which is not a server id"),
                        "use \"drop\" or the id of one of the [[servers]]",
                    )
                }
            },
        };
        let e = &self.edge;
        let settings = EdgeSettings {
            handshake_timeout: e.handshake_timeout,
            max_handshake_bytes: e.max_handshake_bytes.clamp(64, 1 << 20),
            max_login_start_bytes: e.max_login_start_bytes.clamp(64, 1 << 20),
            connect_timeout: e.connect_timeout,
            idle_timeout: e.idle_timeout,
            trusted_proxies: trusted,
            limits: LimitSettings {
                status_per_second: e.limits.status_per_second,
                login_per_second: e.limits.login_per_second,
                connections_per_bucket: e.limits.connections_per_bucket,
                max_connections: e.limits.max_connections,
            },
            status_ttl: self.status.cache_ttl,
            status_stale_for: self.status.stale_for,
            status_fetch_timeout: self.status.fetch_timeout,
            status_error_ttl: self.status.error_ttl,
            status_max_response_bytes: self.status.max_response_bytes.clamp(1024, 2 << 20),
            status_cache_max_bytes: self.status.cache_max_mib.clamp(1, 4096) << 20,
            goodbye_timeout: e.goodbye_timeout,
            legacy_grace: e.legacy_grace,
        };
        Ok(FileServers {
            servers: specs,
            routes,
            unknown_host: unknown,
            settings,
            own_listeners: cx.own,
        })
    }

    fn server(
        &self,
        cx: &Ctx<'_>,
        id: &Spanned<String>,
        backend: &Spanned<String>,
        templated: bool,
        motd: &MotdConfig,
        options: impl FnOnce(&mut Server),
    ) -> Result<Server, ConfigError> {
        if id.get_ref().trim().is_empty() {
            return cx.err(
                id.span(),
                "empty server id",
                "ids name servers in the API and metrics, e.g. \"survival\"",
            );
        }
        check_backend(cx, backend, templated)?;
        if let Some(key) = cx.own_listener(backend.get_ref()) {
            return cx.err(
                backend.span(),
                format!("backend `{}` is this Warden's own {key}", backend.get_ref()),
                LOOP_HINT,
            );
        }
        let mut server = Server::new(id.get_ref(), backend.get_ref());
        options(&mut server);
        server.status = Arc::new(status_texts(cx, motd)?);
        Ok(server)
    }

    fn hosts(&self, cx: &Ctx<'_>, hosts: &[Spanned<String>]) -> Result<Vec<String>, ConfigError> {
        hosts
            .iter()
            .map(|h| match normalize_host(h.get_ref()) {
                Ok(n) => Ok(n),
                Err(e) => cx.err(
                    h.span(),
                    format!("host `{}`: {e}", h.get_ref()),
                    "hosts are DNS names such as \"survival.play.example.com\"",
                ),
            })
            .collect()
    }
}

fn add(
    cx: &Ctx<'_>,
    b: &mut RouteTableBuilder,
    server: Server,
    hosts: &[String],
    spans: &[Spanned<String>],
) -> Result<(), ConfigError> {
    b.add(server, hosts).or_else(|e| {
        let span = match &e {
            TableError::DuplicateHost { host, .. } | TableError::BadPattern(host) => spans
                .iter()
                .find(|s| normalize_host(s.get_ref()).ok().as_deref() == Some(host.as_str()))
                .map(|s| s.span()),
            TableError::BadPlaceholder { .. } => None,
        }
        .unwrap_or_else(|| spans.first().map(|s| s.span()).unwrap_or(0..0));
        let hint = match &e {
            TableError::DuplicateHost { .. } => "each host may belong to one server only",
            TableError::BadPattern(_) => {
                "a wildcard replaces a whole label: \"*.play.example.com\""
            }
            TableError::BadPlaceholder { .. } => {
                "{1} is the label matched by the first `*`, {2} the second, …"
            }
        };
        cx.err(span, e.to_string(), hint)
    })
}

/// `[store] sentinels`, `master_name` and `failover_wait`: host:port each, the name with
/// them, both only for `kind = "redis"`.
fn check_sentinels(cx: &Ctx<'_>, store: &StoreSection) -> Result<(), ConfigError> {
    let hint = "list three sentinels on different machines, e.g. \
                [\"10.0.0.1:26379\", \"10.0.0.2:26379\", \"10.0.0.3:26379\"]";
    for s in &store.sentinels {
        let ok = s.get_ref().rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return cx.err(
                s.span(),
                format!("store.sentinels: `{}` is not host:port", s.get_ref()),
                hint,
            );
        }
    }
    match (store.sentinels.first(), &store.master_name) {
        (Some(first), _) if *store.kind.get_ref() != StoreKind::Redis => cx.err(
            first.span(),
            "store.sentinels is only for kind = \"redis\"",
            "add kind = \"redis\" to [store], or remove sentinels",
        ),
        (Some(first), None) => cx.err(
            first.span(),
            "store.sentinels needs store.master_name",
            "add master_name = \"…\": the NAME of the sentinels' `sentinel monitor NAME host port quorum`",
        ),
        (None, Some(name)) => cx.err(
            name.span(),
            "store.master_name is only used with store.sentinels",
            hint,
        ),
        (Some(_), Some(name)) if name.get_ref().is_empty() => cx.err(
            name.span(),
            "store.master_name is empty",
            "the NAME of the sentinels' `sentinel monitor NAME host port quorum`",
        ),
        _ if store.failover_wait > std::time::Duration::from_secs(600) => Err(ConfigError::general(
            cx.path,
            "store.failover_wait is longer than 10 minutes",
            "a failover takes the sentinels' down-after-milliseconds plus a few seconds; \
             e.g. \"15s\" (the default)",
        )),
        _ => Ok(()),
    }
}

fn check_backend(
    cx: &Ctx<'_>,
    backend: &Spanned<String>,
    templated: bool,
) -> Result<(), ConfigError> {
    let b = backend.get_ref();
    let hint = "a backend is host:port, e.g. \"127.0.0.1:25570\" or \"mc-survival.internal:25565\"";
    let Some((host, port)) = b.rsplit_once(':') else {
        return cx.err(backend.span(), format!("backend `{b}` has no port"), hint);
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return cx.err(
            backend.span(),
            format!("backend `{b}` is not host:port"),
            hint,
        );
    }
    if !templated && b.contains('{') {
        return cx.err(
            backend.span(),
            format!("backend `{b}` uses a placeholder"),
            "placeholders like {1} only work in [[routes]] with a wildcard host",
        );
    }
    Ok(())
}

fn status_texts(cx: &Ctx<'_>, m: &MotdConfig) -> Result<StatusTexts, ConfigError> {
    let d = StatusTexts::default();
    let favicon = match &m.favicon {
        None => None,
        Some(p) => Some(load_favicon(cx, p)?),
    };
    Ok(StatusTexts {
        offline: m.offline.clone().unwrap_or(d.offline),
        sleeping: m.sleeping.clone().unwrap_or(d.sleeping),
        starting: m.starting.clone().unwrap_or(d.starting),
        stopping: m.stopping.clone().unwrap_or(d.stopping),
        archived: m.archived.clone().unwrap_or(d.archived),
        failed: m.failed.clone().unwrap_or(d.failed),
        version_name: m.version_name.clone().unwrap_or(d.version_name),
        favicon,
    })
}

fn load_favicon(cx: &Ctx<'_>, p: &Spanned<std::path::PathBuf>) -> Result<String, ConfigError> {
    let base = cx.path.parent().unwrap_or(Path::new("."));
    let path = base.join(p.get_ref());
    let hint = "the favicon is a 64×64 PNG file, path relative to the config file";
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => return cx.err(p.span(), format!("favicon {}: {e}", path.display()), hint),
    };
    if meta.len() > MAX_FAVICON_BYTES {
        return cx.err(
            p.span(),
            format!("favicon {} is {} bytes", path.display(), meta.len()),
            hint,
        );
    }
    let bytes = std::fs::read(&path)
        .or_else(|e| cx.err(p.span(), format!("favicon {}: {e}", path.display()), hint))?;
    if !bytes.starts_with(PNG_MAGIC) {
        return cx.err(
            p.span(),
            format!("favicon {} is not a PNG", path.display()),
            hint,
        );
    }
    Ok(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// The API must not be reachable in plain text from the network by accident.
fn check_api(path: &Path, api: &super::model::ApiSection) -> Result<(), ConfigError> {
    let addr: SocketAddr = api.listen.parse().map_err(|_| {
        ConfigError::general(
            path,
            format!("api.listen: `{}` is not an address", api.listen),
            "use ip:port, e.g. \"127.0.0.1:9941\"",
        )
    })?;
    let tls = match (&api.tls_cert, &api.tls_key) {
        (Some(_), Some(_)) => true,
        (None, None) => false,
        _ => {
            return Err(ConfigError::general(
                path,
                "api: tls_cert and tls_key go together",
                "set both (PEM files) or neither",
            ))
        }
    };
    if !addr.ip().is_loopback() && !tls && !api.insecure_remote {
        return Err(ConfigError::general(
            path,
            format!(
                "api.listen = \"{}\" is reachable from the network but the API has no TLS",
                api.listen
            ),
            "set api.tls_cert and api.tls_key, or api.insecure_remote = true if a TLS proxy fronts it",
        ));
    }
    if api.rate_limit == 0 || api.max_streams == 0 || api.max_streams_per_token == 0 {
        return Err(ConfigError::general(
            path,
            "api.rate_limit, api.max_streams and api.max_streams_per_token must be at least 1",
            "the defaults are 50 requests/s per token, 64 streams, 8 per token",
        ));
    }
    check_http_limits(
        path,
        "api",
        [api.max_connections, api.max_connections_per_source],
        [api.idle_timeout, api.request_timeout],
    )
}

/// The connection limits the API and metrics listeners share: counts of at least 1,
/// timeouts above zero.
fn check_http_limits(
    path: &Path,
    section: &str,
    [max, per_source]: [usize; 2],
    [idle, request]: [std::time::Duration; 2],
) -> Result<(), ConfigError> {
    if max == 0 || per_source == 0 || idle.is_zero() || request.is_zero() {
        return Err(ConfigError::general(
            path,
            format!(
                "{section}.max_connections, max_connections_per_source, idle_timeout and \
                 request_timeout must be above zero"
            ),
            "leave them out for the defaults (see examples/warden.toml)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use std::path::Path;

    fn check(text: &str) -> Result<(), String> {
        parse(Path::new("warden.toml"), text)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_a_full_config() {
        let t = r#"
[edge]
listen = ["0.0.0.0:25565", "[::]:25566"]
trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]
handshake_timeout = "5s"
[status]
cache_ttl = "10s"
[[servers]]
id = "survival"
hosts = ["survival.play.example.com", "MC.Example.org."]
backend = "127.0.0.1:25570"
proxy_protocol = true
[[routes]]
host = "*.play.example.com"
backend = "{1}.nodes.internal:25565"
"#;
        check(t).unwrap();
    }

    #[test]
    fn errors_name_the_line_and_hint() {
        let dup = "[[servers]]\nid = \"a\"\nhosts = [\"x.test\"]\nbackend = \"127.0.0.1:1\"\n[[servers]]\nid = \"b\"\nhosts = [\"X.test\"]\nbackend = \"127.0.0.1:2\"\n";
        let e = check(dup).unwrap_err();
        assert!(e.starts_with("warden.toml:7:"), "{e}");
        assert!(e.contains("hint:"), "{e}");
        let typo = "[edge]\nlisten = \"0.0.0.0:25565\"\nhandshake_timout = \"5s\"\n";
        let e = check(typo).unwrap_err();
        assert!(e.starts_with("warden.toml:3:"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
        let port = "[[servers]]\nid = \"a\"\nhosts = [\"x.test\"]\nbackend = \"127.0.0.1\"\n";
        assert!(check(port).unwrap_err().starts_with("warden.toml:4:"));
        let dur = "[edge]\nconnect_timeout = 5\n";
        assert!(check(dur).unwrap_err().contains("warden.toml:2:"));
        let placeholder = "[[routes]]\nhost = \"*.a.test\"\nbackend = \"{2}.x:1\"\n";
        assert!(check(placeholder).unwrap_err().contains("{2}"));
        let unknown = "[edge]\nunknown_host = \"lobby\"\n";
        assert!(check(unknown).unwrap_err().starts_with("warden.toml:2:"));
    }

    #[test]
    fn kinds_and_what_they_need_are_checked_with_line_and_hint() {
        for (text, line, says) in [
            ("[store]\nkind = \"redsi\"\n", 2, "`embedded` or `redis`"),
            ("\n[store]\nkind = \"redis\"\n", 3, "needs store.url"),
            ("[archive]\nkind = \"s4\"\n", 2, "`local` or `s3`"),
            (
                "[archive]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\n",
                2,
                "needs archive.bucket",
            ),
            (
                "[[webhooks]]\nurl = \"https://example.com/h\"\nformat = \"slack\"\n",
                3,
                "`json` or `discord`",
            ),
        ] {
            let e = check(text).unwrap_err();
            assert!(e.starts_with(&format!("warden.toml:{line}:")), "{e}");
            assert!(e.contains(says) && e.contains("hint:"), "{e}");
        }
        let e = check("[archive]\nmax_mib_per_sec = 0.0\n").unwrap_err();
        assert!(e.contains("positive") && e.contains("hint:"), "{e}");
        check("[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n").unwrap();
        check(
            "[archive]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"w\"\n\
             access_key_env = \"A\"\nsecret_key_env = \"S\"\nmax_mib_per_sec = 5.0\n",
        )
        .unwrap();
        check("[[webhooks]]\nurl = \"https://example.com/h\"\nformat = \"discord\"\n").unwrap();
    }

    #[test]
    fn backup_settings_are_checked_with_line_and_hint() {
        for (text, line, says) in [
            ("[backup]\nevery = \"soon\"\n", 2, "not a duration"),
            ("\n[backup]\nevery = \"30s\"\n", 3, "shorter than a minute"),
            (
                "[backup]\nretention = { monthly = 2 }\n",
                2,
                "unknown field `monthly`",
            ),
            (
                "[backup]\nretention = { hourly = -1 }\n",
                2,
                "invalid value",
            ),
        ] {
            let e = check(text).unwrap_err();
            assert!(e.starts_with(&format!("warden.toml:{line}:")), "{e}");
            assert!(e.contains(says) && e.contains("hint:"), "{e}");
        }
        let cfg = super::super::parse(
            Path::new("warden.toml"),
            "[backup]\nevery = \"2h\"\nat_stop = false\nretention = { hourly = 48, weekly = 0 }\n",
        )
        .unwrap();
        let b = cfg.backup.settings().unwrap().unwrap();
        assert_eq!(b.every, std::time::Duration::from_secs(7200));
        assert!(!b.at_stop);
        assert_eq!((b.retention.last, b.retention.hourly), (5, 48));
        assert_eq!((b.retention.daily, b.retention.weekly), (7, 0));
        let off = super::super::parse(Path::new("warden.toml"), "[backup]\nenabled = false\n");
        assert!(off.unwrap().backup.settings().unwrap().is_none());
    }

    #[test]
    fn sentinel_keys_are_checked_with_line_and_hint() {
        let redis = "[store]\nkind = \"redis\"\n";
        for (text, line, says) in [
            (
                format!("{redis}sentinels = [\"10.0.0.1:26379\",\n  \"10.0.0.2\"]\nmaster_name = \"w\"\n"),
                4,
                "not host:port",
            ),
            (
                format!("{redis}sentinels = [\"10.0.0.1:26379\"]\n"),
                3,
                "needs store.master_name",
            ),
            (
                format!("{redis}url = \"redis://h:6379\"\n\nmaster_name = \"w\"\n"),
                5,
                "only used with store.sentinels",
            ),
            (
                "[store]\nsentinels = [\"10.0.0.1:26379\"]\nmaster_name = \"w\"\n".to_string(),
                2,
                "only for kind",
            ),
        ] {
            let e = check(&text).unwrap_err();
            assert!(e.starts_with(&format!("warden.toml:{line}:")), "{e}");
            assert!(e.contains(says) && e.contains("hint:"), "{e}");
        }
        let e = check(&format!(
            "{redis}sentinels = [\"a:1\"]\nmaster_name = \"w\"\nfailover_wait = \"1h\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("failover_wait") && e.contains("hint:"), "{e}");
        check(&format!(
            "{redis}sentinels = [\"10.0.0.1:26379\", \"[::1]:26379\"]\nmaster_name = \"warden\"\n"
        ))
        .unwrap();
    }

    #[test]
    fn a_backend_may_not_be_warden_itself() {
        let server = |backend: &str| {
            format!("[[servers]]\nid = \"a\"\nhosts = [\"a.test\"]\nbackend = \"{backend}\"\n")
        };
        let edge = "[edge]\nlisten = \"0.0.0.0:25565\"\n[api]\nlisten = \"127.0.0.1:9941\"\n";
        for (backend, key) in [
            ("127.0.0.1:25565", "edge.listen"),
            ("0.0.0.0:25565", "edge.listen"),
            ("localhost:9941", "api.listen"),
            ("127.0.0.1:9940", "metrics.listen"),
        ] {
            let e = check(&format!("{edge}{}", server(backend))).unwrap_err();
            assert!(e.starts_with("warden.toml:8:"), "{e}");
            assert!(e.contains(key) && e.contains("hint:"), "{e}");
        }
        check(&format!("{edge}{}", server("127.0.0.1:25570"))).unwrap();
        let route = "[[routes]]\nhost = \"*.a.test\"\nbackend = \"127.0.0.1:25565\"\n";
        assert!(check(route).unwrap_err().contains("edge.listen"));
        let node = format!(
            "{}node_backends = {{ b = \"127.0.0.1:25565\" }}\n",
            server("10.0.0.1:1")
        );
        assert!(check(&node).unwrap_err().contains("node_backends.b"));
    }
}
