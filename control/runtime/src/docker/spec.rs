//! What a server's container must look like, and the pure translation into Docker's create body.
//!
//! Kept free of I/O so every rule (host networking, read-only binds, memory in bytes, the
//! spec fingerprint that decides whether an existing container is stale) is unit-tested
//! without a daemon.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};

use crate::RuntimeError;

/// Every Warden container carries this label, so stray ones can be found and cleaned up.
pub const MANAGED_LABEL: &str = "warden.managed";
/// Fingerprint of the spec a container was created from; a mismatch means "recreate".
pub const SPEC_LABEL: &str = "warden.spec";
/// The server a container or volume was made for.
pub const SERVER_LABEL: &str = "warden.server";
/// The fleet (store) that made it: the collector only considers its own fleet's.
pub const FLEET_LABEL: &str = "warden.fleet";

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// One game server as a Docker container.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerSpec {
    /// Container name (also how every call addresses it).
    pub container: String,
    pub image: String,
    /// Named volume holding the world; the only place the server may write durably.
    pub volume: String,
    /// Where the volume is mounted; archives are taken relative to it.
    pub data_path_in_container: String,
    /// Hard memory limit; 0 means none.
    pub memory_gb: f64,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Overrides the image's command when set.
    pub cmd: Option<Vec<String>>,
    /// Host binds, `src:dst[:opts]`; always mounted read-only (see [`DockerSpec::validate`]).
    pub binds: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `(host:port, password)` for a graceful `save-all` + `stop` before `docker stop`.
    pub rcon: Option<(String, String)>,
    /// The container's own stop timeout, used when something other than Warden stops it
    /// (e.g. the daemon shutting down).
    pub stop_timeout: Duration,
}

impl DockerSpec {
    /// A spec with the defaults: data at `/data`, no memory limit, 60 s stop timeout.
    pub fn new(
        container: impl Into<String>,
        image: impl Into<String>,
        volume: impl Into<String>,
    ) -> Self {
        Self {
            container: container.into(),
            image: image.into(),
            volume: volume.into(),
            data_path_in_container: "/data".into(),
            memory_gb: 0.0,
            env: Vec::new(),
            cmd: None,
            binds: Vec::new(),
            labels: BTreeMap::new(),
            rcon: None,
            stop_timeout: Duration::from_secs(60),
        }
    }

    /// Rejects specs Docker would misinterpret or that would let data escape the volume.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let bad = |why: String| Err(RuntimeError::Other(format!("container spec: {why}")));
        if !valid_name(&self.container) {
            return bad(format!("invalid container name {:?}", self.container));
        }
        if !valid_name(&self.volume) {
            return bad(format!("invalid volume name {:?}", self.volume));
        }
        if self.image.trim().is_empty() {
            return bad("empty image".into());
        }
        if !self.data_path_in_container.starts_with('/') || self.data_path_in_container == "/" {
            return bad(format!(
                "data path {:?} must be an absolute directory other than /",
                self.data_path_in_container
            ));
        }
        if !self.memory_gb.is_finite() || self.memory_gb < 0.0 {
            return bad(format!("memory_gb {} is not a size", self.memory_gb));
        }
        if memory_bytes(self.memory_gb).is_none() && self.memory_gb != 0.0 {
            return bad(format!("memory_gb {} is out of range", self.memory_gb));
        }
        for bind in &self.binds {
            read_only_bind(bind)
                .map_err(|why| RuntimeError::Other(format!("container spec: {why}")))?;
        }
        if self.cmd.as_ref().is_some_and(|c| c.is_empty()) {
            return bad("empty cmd (leave it unset to use the image's)".into());
        }
        Ok(())
    }

    /// The create body. Call [`DockerSpec::validate`] first.
    pub fn create_body(&self) -> ContainerCreateBody {
        let mut labels: std::collections::HashMap<String, String> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert(MANAGED_LABEL.into(), "true".into());
        labels.insert(SPEC_LABEL.into(), self.fingerprint());

        let mut binds = vec![format!("{}:{}", self.volume, self.data_path_in_container)];
        binds.extend(self.binds.iter().filter_map(|b| read_only_bind(b).ok()));

        let memory = memory_bytes(self.memory_gb);
        ContainerCreateBody {
            image: Some(self.image.clone()),
            env: Some(self.env.clone()),
            cmd: self.cmd.clone(),
            labels: Some(labels),
            working_dir: Some(self.data_path_in_container.clone()),
            stop_timeout: Some(self.stop_timeout.as_secs().min(i64::MAX as u64) as i64),
            host_config: Some(HostConfig {
                // Bridge networks are forbidden on these machines; servers bind host ports.
                network_mode: Some("host".into()),
                binds: Some(binds),
                memory,
                // Equal to the memory limit: no swap, so a leaking JVM is killed rather than
                // dragging the whole node into swap.
                memory_swap: memory,
                // Warden decides when servers run; the daemon must not resurrect them.
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A stable digest of everything that shapes the container. Stable across Rust releases
    /// (FNV-1a, not `DefaultHasher`), because it is stored on containers and compared later.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |s: &str| {
            for b in s.as_bytes().iter().chain(std::iter::once(&0xff)) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        feed(&self.image);
        feed(&self.volume);
        feed(&self.data_path_in_container);
        feed(&format!("{:?}", memory_bytes(self.memory_gb)));
        for e in &self.env {
            feed(e);
        }
        feed("cmd");
        for c in self.cmd.iter().flatten() {
            feed(c);
        }
        feed("binds");
        for b in &self.binds {
            feed(b);
        }
        feed("labels");
        for (k, v) in &self.labels {
            feed(k);
            feed(v);
        }
        feed(&self.stop_timeout.as_secs().to_string());
        format!("{h:016x}")
    }
}

/// Docker's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128
}

/// Whole GiB → bytes, `None` for no limit.
fn memory_bytes(gb: f64) -> Option<i64> {
    let bytes = (gb * GIB).round();
    (gb.is_finite() && bytes >= 1.0 && bytes < i64::MAX as f64).then_some(bytes as i64)
}

/// Host binds are read-only: anything a server wrote outside its volume would be missed by
/// archiving and lost on the next node. `src:dst` gets `:ro`; `rw` is refused.
fn read_only_bind(bind: &str) -> Result<String, String> {
    let parts: Vec<&str> = bind.split(':').collect();
    match parts.as_slice() {
        [src, dst] if is_abs(src) && is_abs(dst) => Ok(format!("{src}:{dst}:ro")),
        [src, dst, opts] if is_abs(src) && is_abs(dst) => {
            let opts: Vec<&str> = opts.split(',').collect();
            if opts.contains(&"rw") {
                Err(format!(
                    "bind {bind:?} is read-write; host binds must be read-only"
                ))
            } else if opts.contains(&"ro") {
                Ok(bind.to_string())
            } else {
                Ok(format!("{bind},ro"))
            }
        }
        _ => Err(format!(
            "bind {bind:?} is not `/host/path:/container/path[:opts]`"
        )),
    }
}

fn is_abs(p: &str) -> bool {
    p.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DockerSpec {
        let mut s = DockerSpec::new("warden-srv", "img:1", "warden-srv-data");
        s.memory_gb = 1.5;
        s.binds = vec![
            "/usr:/usr".into(),
            "/etc/ssl:/etc/ssl:ro".into(),
            "/a:/b:z".into(),
        ];
        s.labels
            .insert("warden.host".into(), "mc.example.org".into());
        s
    }

    #[test]
    fn create_body_uses_host_network_memory_and_read_only_binds() {
        let s = spec();
        s.validate().unwrap();
        let body = s.create_body();
        let hc = body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert_eq!(hc.memory, Some(1_610_612_736));
        assert_eq!(hc.memory_swap, hc.memory);
        assert_eq!(
            hc.binds.unwrap(),
            vec![
                "warden-srv-data:/data",
                "/usr:/usr:ro",
                "/etc/ssl:/etc/ssl:ro",
                "/a:/b:z,ro"
            ]
        );
        let labels = body.labels.unwrap();
        assert_eq!(labels.get(MANAGED_LABEL).map(String::as_str), Some("true"));
        assert_eq!(
            labels.get("warden.host").map(String::as_str),
            Some("mc.example.org")
        );
        assert_eq!(labels.get(SPEC_LABEL), Some(&s.fingerprint()));
    }

    #[test]
    fn no_memory_limit_when_zero() {
        let mut s = spec();
        s.memory_gb = 0.0;
        s.validate().unwrap();
        assert_eq!(s.create_body().host_config.unwrap().memory, None);
    }

    #[test]
    fn rejects_bad_input() {
        type Mutation = Box<dyn Fn(&mut DockerSpec)>;
        let cases: Vec<Mutation> = vec![
            Box::new(|s| s.container = "../etc".into()),
            Box::new(|s| s.container = String::new()),
            Box::new(|s| s.volume = "a b".into()),
            Box::new(|s| s.image = " ".into()),
            Box::new(|s| s.data_path_in_container = "data".into()),
            Box::new(|s| s.data_path_in_container = "/".into()),
            Box::new(|s| s.memory_gb = f64::NAN),
            Box::new(|s| s.memory_gb = -1.0),
            Box::new(|s| s.memory_gb = 1e30),
            Box::new(|s| s.binds = vec!["/var:/var:rw".into()]),
            Box::new(|s| s.binds = vec!["relative:/x".into()]),
            Box::new(|s| s.binds = vec!["/x".into()]),
            Box::new(|s| s.cmd = Some(vec![])),
        ];
        for (i, mutate) in cases.iter().enumerate() {
            let mut s = spec();
            mutate(&mut s);
            assert!(s.validate().is_err(), "case {i} accepted: {s:?}");
        }
    }

    #[test]
    fn fingerprint_tracks_what_shapes_the_container() {
        let a = spec();
        assert_eq!(a.fingerprint(), spec().fingerprint());
        let mut b = spec();
        b.image = "img:2".into();
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = spec();
        c.memory_gb = 2.0;
        assert_ne!(a.fingerprint(), c.fingerprint());
        // RCON credentials do not shape the container, so changing them must not recreate it.
        let mut d = spec();
        d.rcon = Some(("127.0.0.1:25575".into(), "pw".into()));
        assert_eq!(a.fingerprint(), d.fingerprint());
    }
}
