//! Turns planner decisions into Hetzner servers: picks the cheapest fitting
//! (type, location) from the prices the API reports, creates servers from
//! the node snapshot with labels and cloud-init, waits for the create
//! action, and falls back to the next candidate when a location or type is
//! unavailable. In dry-run mode it reads but only logs what it would change.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::hetzner::api::{Client, CreateServer, Server};

/// Label that marks servers of one Warden pool.
pub const POOL_LABEL: &str = "warden-pool";

/// Provisioner settings.
#[derive(Debug, Clone)]
pub struct ProvisionerConfig {
    /// Pool name; servers carry `warden-pool=<pool>`.
    pub pool: String,
    /// The image nodes boot.
    pub image: NodeImage,
    /// cloud-init user data.
    pub user_data: String,
    /// Locations in order of preference (e.g. fsn1, nbg1, hel1).
    pub locations: Vec<String>,
    /// Allowed server types; empty = any type with enough memory.
    pub server_types: Vec<String>,
    pub min_memory_gb: f64,
    pub labels: BTreeMap<String, String>,
    pub name_prefix: String,
    /// Log decisions, change nothing.
    pub dry_run: bool,
    pub action_poll: Duration,
    /// Bound on waiting for one create or delete action.
    pub action_deadline: Duration,
}

/// The image a node boots.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeImage {
    /// An image (a snapshot of `node-image/`) by id.
    Id(String),
    /// The newest snapshot whose labels match this selector (e.g. `warden-node=1`),
    /// looked up at every create: a newly uploaded image is used without a config change.
    Newest(String),
}

/// A (type, location) the provisioner may buy, with its current price.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub server_type: String,
    pub location: String,
    pub memory_gb: f64,
    pub hourly_price: f64,
}

/// A server created (or, in dry-run, planned).
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioned {
    /// None in dry-run.
    pub id: Option<u64>,
    pub name: String,
    pub candidate: Candidate,
}

/// The provisioner.
pub struct Provisioner {
    client: Client,
    cfg: ProvisionerConfig,
    log: Mutex<Vec<String>>,
    seq: Mutex<u64>,
}

/// Errors after which another location or type may still work.
fn try_elsewhere(e: &Error) -> bool {
    match e {
        Error::Api { status, code, .. } => {
            matches!(*status, 412 | 503)
                || matches!(
                    code.as_str(),
                    "resource_unavailable" | "placement_error" | "unavailable" | "maintenance"
                )
        }
        _ => false,
    }
}

impl Provisioner {
    pub fn new(client: Client, cfg: ProvisionerConfig) -> Self {
        Provisioner {
            client,
            cfg,
            log: Mutex::new(Vec::new()),
            seq: Mutex::new(0),
        }
    }

    fn note(&self, msg: String) {
        tracing::info!(dry_run = self.cfg.dry_run, "{msg}");
        {
            let mut l = self.log.lock();
            l.push(msg);
        }
    }

    /// Every decision taken so far, in order (what dry-run reports).
    pub fn decisions(&self) -> Vec<String> {
        self.log.lock().clone()
    }

    /// Fitting (type, location) pairs, cheapest per GB first, then by location preference.
    pub async fn candidates(&self) -> Result<Vec<Candidate>> {
        let types = self.client.server_types().await?;
        let mut out = Vec::new();
        for t in &types {
            if t.deprecated == Some(true) || t.memory < self.cfg.min_memory_gb {
                continue;
            }
            if !self.cfg.server_types.is_empty() && !self.cfg.server_types.contains(&t.name) {
                continue;
            }
            for loc in &self.cfg.locations {
                if let Some(p) = t.hourly_price(loc) {
                    out.push(Candidate {
                        server_type: t.name.clone(),
                        location: loc.clone(),
                        memory_gb: t.memory,
                        hourly_price: p,
                    });
                }
            }
        }
        let pref = |c: &Candidate| {
            let loc = self.cfg.locations.iter().position(|l| *l == c.location);
            let ty = self
                .cfg
                .server_types
                .iter()
                .position(|t| *t == c.server_type);
            (ty.unwrap_or(0), loc.unwrap_or(usize::MAX))
        };
        out.sort_by(|a, b| {
            (a.hourly_price / a.memory_gb)
                .total_cmp(&(b.hourly_price / b.memory_gb))
                .then(pref(a).cmp(&pref(b)))
        });
        if out.is_empty() {
            return Err(Error::Config(format!(
                "no server type with ≥ {} GB in {:?}",
                self.cfg.min_memory_gb, self.cfg.locations
            )));
        }
        Ok(out)
    }

    fn next_name(&self) -> String {
        let mut n = self.seq.lock();
        *n += 1;
        let n = *n;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("{}-{t}-{n}", self.cfg.name_prefix)
    }

    /// Creates `count` nodes, falling back through the candidates.
    pub async fn scale_out(&self, count: usize) -> Result<Vec<Provisioned>> {
        let cands = self.candidates().await?;
        let image = self.image().await?;
        let mut unavailable: Vec<bool> = vec![false; cands.len()];
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.next_name();
            let user_data = |_: &Candidate| self.cfg.user_data.clone();
            match self
                .create_from(&cands, &mut unavailable, &name, &image, &user_data)
                .await
            {
                Ok(p) => out.push(p),
                Err(Error::Exhausted(_)) => {
                    return Err(Error::Exhausted(format!(
                        "no candidate could create a node ({} created)",
                        out.len()
                    )))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Creates one node called `name` with the user data `user_data` renders for the
    /// candidate bought (its memory, type and location), falling back through the
    /// candidates; `Exhausted` when none could.
    pub async fn create_node(
        &self,
        name: &str,
        user_data: &(dyn Fn(&Candidate) -> String + Sync),
    ) -> Result<Provisioned> {
        let cands = self.candidates().await?;
        let image = self.image().await?;
        let mut unavailable = vec![false; cands.len()];
        self.create_from(&cands, &mut unavailable, name, &image, user_data)
            .await
    }

    /// The image id to create nodes from (none needed in a dry run). By label: the newest
    /// snapshot so labelled, or an error that says what to do when there is none.
    async fn image(&self) -> Result<String> {
        let labels = match (&self.cfg.image, self.cfg.dry_run) {
            (_, true) => return Ok(String::new()),
            (NodeImage::Id(id), false) => return Ok(id.clone()),
            (NodeImage::Newest(labels), false) => labels,
        };
        match self.client.newest_snapshot(labels).await? {
            Some(id) => Ok(id.to_string()),
            None => Err(Error::Config(format!(
                "no snapshot has the labels {labels}: upload the node image first \
                 (node-image/upload.sh)"
            ))),
        }
    }

    async fn create_from(
        &self,
        cands: &[Candidate],
        unavailable: &mut [bool],
        name: &str,
        image: &str,
        user_data: &(dyn Fn(&Candidate) -> String + Sync),
    ) -> Result<Provisioned> {
        for (i, c) in cands.iter().enumerate() {
            if unavailable[i] {
                continue;
            }
            if self.cfg.dry_run {
                self.note(format!(
                    "would create {name}: {} in {} at {:.4}/h",
                    c.server_type, c.location, c.hourly_price
                ));
                return Ok(Provisioned {
                    id: None,
                    name: name.to_string(),
                    candidate: c.clone(),
                });
            }
            match self.create_one(name, c, image, user_data(c)).await {
                Ok(id) => {
                    self.note(format!(
                        "created {name} (id {id}): {} in {}",
                        c.server_type, c.location
                    ));
                    return Ok(Provisioned {
                        id: Some(id),
                        name: name.to_string(),
                        candidate: c.clone(),
                    });
                }
                Err(e) if try_elsewhere(&e) => {
                    self.note(format!(
                        "{} in {} unavailable ({e}); trying the next candidate",
                        c.server_type, c.location
                    ));
                    unavailable[i] = true;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Exhausted(format!(
            "no candidate could create {name}"
        )))
    }

    async fn create_one(
        &self,
        name: &str,
        c: &Candidate,
        image: &str,
        user_data: String,
    ) -> Result<u64> {
        let mut labels = self.cfg.labels.clone();
        labels.insert(POOL_LABEL.to_string(), self.cfg.pool.clone());
        let created = self
            .client
            .create_server(&CreateServer {
                name: name.to_string(),
                server_type: c.server_type.clone(),
                image: image.to_string(),
                location: c.location.clone(),
                labels,
                user_data,
                start_after_create: true,
            })
            .await?;
        let id = created.server.id;
        // create, then the follow-ups (start_server): the node is usable only after all
        let mut waited = Ok(());
        for a in std::iter::once(&created.action).chain(&created.next_actions) {
            waited = self
                .client
                .wait_action(a.id, self.cfg.action_poll, self.cfg.action_deadline)
                .await
                .map(|_| ());
            if waited.is_err() {
                break;
            }
        }
        if let Err(e) = waited {
            // do not leave a half-created server billing
            if let Ok(a) = self.client.delete_server(id).await {
                let _ = self
                    .client
                    .wait_action(a.id, self.cfg.action_poll, self.cfg.action_deadline)
                    .await;
            }
            return Err(e);
        }
        Ok(id)
    }

    /// Deletes one node (billing stops only on deletion).
    pub async fn scale_in(&self, id: u64) -> Result<()> {
        if self.cfg.dry_run {
            self.note(format!("would delete server {id}"));
            return Ok(());
        }
        let a = self.client.delete_server(id).await?;
        self.client
            .wait_action(a.id, self.cfg.action_poll, self.cfg.action_deadline)
            .await?;
        self.note(format!("deleted server {id}"));
        Ok(())
    }

    /// The pool's servers, found by label.
    pub async fn list(&self) -> Result<Vec<Server>> {
        self.client
            .list_servers(&format!("{POOL_LABEL}={}", self.cfg.pool))
            .await
    }
}
