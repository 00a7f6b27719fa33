//! `[capacity]`: which cloud to buy nodes from, what a node looks like, and the limits the
//! controller plans within. Checked once at load so a bad value is a config error with
//! its reason, never a controller that misbehaves at 19:00.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use warden_forecast::hetzner::provision::NodeImage;

use crate::CapacityError;

/// Where nodes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Hetzner Cloud, with the token from the environment variable `token_env`.
    Hetzner,
    /// Plans, logs and reports every decision; buys and deletes nothing. Reads the cloud
    /// API when a token is set (prices, types), else plans with `template.memory_gb`.
    DryRun,
}

/// What a bought node is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Server types in order of preference (e.g. `["cx42", "cpx41"]`); empty: any type
    /// with at least `memory_gb`.
    #[serde(default)]
    pub server_types: Vec<String>,
    /// Locations in order of preference (e.g. `["fsn1", "nbg1", "hel1"]`).
    pub locations: Vec<String>,
    /// The node image by snapshot id (see `node-image/`)...
    #[serde(default)]
    pub image: Option<String>,
    /// ...or by labels: the newest snapshot matching this selector when a node is
    /// bought (e.g. `warden-node=1`, what `node-image/upload.sh` labels), so a new upload
    /// needs no config change. Exactly one of the two.
    #[serde(default)]
    pub image_label: Option<String>,
    /// Labels every node gets (besides `warden-pool`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// cloud-init user data template: `{name}`, `{memory_gb}`, `{server_type}`,
    /// `{location}` and `{pool}` are replaced for each node bought.
    pub user_data: PathBuf,
    /// Memory a node offers to game servers, GB, when the type's memory is not known (dry
    /// run without a token); otherwise the type's memory less `reserve_gb`.
    #[serde(default = "default_memory_gb")]
    pub memory_gb: f64,
    /// Memory kept for the system on each node, GB (default 1).
    #[serde(default = "default_reserve_gb")]
    pub reserve_gb: f64,
}

fn default_memory_gb() -> f64 {
    7.0
}
fn default_reserve_gb() -> f64 {
    1.0
}

/// Hot spares: empty nodes kept ready. A number, or per weekday (UTC) with a default:
/// `spares = { default = 1, fri = 3, sat = 3 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Spares {
    Count(usize),
    Schedule(BTreeMap<String, usize>),
}

impl Default for Spares {
    fn default() -> Self {
        Spares::Count(0)
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Spares {
    /// Spares wanted at `unix_ms` (UTC weekday).
    pub fn at(&self, unix_ms: u64) -> usize {
        match self {
            Spares::Count(n) => *n,
            Spares::Schedule(map) => {
                // 1970-01-01 was a Thursday.
                let day = ((unix_ms / 86_400_000 + 3) % 7) as usize;
                map.get(DAYS[day])
                    .or_else(|| map.get("default"))
                    .copied()
                    .unwrap_or(0)
            }
        }
    }
}

/// The `[capacity]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacitySettings {
    pub provider: Provider,
    /// Environment variable holding the API token (default `HCLOUD_TOKEN`).
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// The API's base URL (default Hetzner's).
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Names the fleet's nodes at the cloud (`warden-pool=<pool>`) and prefixes their names.
    #[serde(default = "default_pool")]
    pub pool: String,
    pub template: Template,
    /// Never fewer nodes (of the `node` role, bought or not). Default 1.
    #[serde(default = "one")]
    pub min_nodes: usize,
    /// Never more. Default 10.
    #[serde(default = "ten")]
    pub max_nodes: usize,
    #[serde(default)]
    pub spares: Spares,
    /// The forecast quantile planned for (default 0.9).
    #[serde(default = "default_quantile")]
    pub quantile: f64,
    /// For sparse demand (a scale-to-zero fleet, most hours empty): hold capacity for an
    /// hour only when the forecast odds that anyone comes reach this. Default 0: off, the
    /// quantile alone (no hour the quantile wants is ever skipped). 0.5 halved the cost
    /// over the oracle on the PLAICraft trace at 28 % of reactive's waits (forecast/).
    #[serde(default = "default_p_hold")]
    pub p_hold: f64,
    /// Euros a day the controller may spend on nodes it bought; none: no cap.
    #[serde(default)]
    pub budget_per_day: Option<f64>,
    /// How often the leader plans (default 1 min).
    #[serde(default = "minute", with = "humantime_serde")]
    pub interval: Duration,
    /// The length of a billed hour, and of the forecast's hour (default 1 h; tests compress
    /// time with a shorter one).
    #[serde(default = "hour", with = "humantime_serde")]
    pub hour: Duration,
    /// Boot-to-ready assumed until this fleet's own nodes have been timed (default 5 min).
    #[serde(default = "five_minutes", with = "humantime_serde")]
    pub lead_time: Duration,
    /// A node is given back only within this long before its next billed hour starts
    /// (default 10 min).
    #[serde(default = "ten_minutes", with = "humantime_serde")]
    pub delete_window: Duration,
    /// A cloud server labelled as this pool that has not joined the fleet this long after
    /// it was created is deleted (default 15 min).
    #[serde(default = "fifteen_minutes", with = "humantime_serde")]
    pub orphan_grace: Duration,
    /// The seed's reactive rule: scale out above this share of RAM in use (0.85)...
    #[serde(default = "default_out_above")]
    pub scale_out_above: f64,
    /// ...and in below this share (0.30) held for `scale_in_after` (20 min).
    #[serde(default = "default_in_below")]
    pub scale_in_below: f64,
    #[serde(default = "twenty_minutes", with = "humantime_serde")]
    pub scale_in_after: Duration,
    /// Hourly demand (GB of RAM in use, one number per line, oldest first, the last one
    /// the hour before now) to start the forecast with, e.g. exported from the platform
    /// this fleet replaces. Used only while the store holds no history.
    #[serde(default)]
    pub seed: Option<PathBuf>,
}

fn default_token_env() -> String {
    "HCLOUD_TOKEN".into()
}
fn default_api_url() -> String {
    warden_forecast::hetzner::api::DEFAULT_BASE.into()
}
fn default_pool() -> String {
    "warden".into()
}
fn one() -> usize {
    1
}
fn ten() -> usize {
    10
}
fn default_quantile() -> f64 {
    0.9
}
fn default_p_hold() -> f64 {
    0.0
}
fn minute() -> Duration {
    Duration::from_secs(60)
}
fn hour() -> Duration {
    Duration::from_secs(3600)
}
fn five_minutes() -> Duration {
    Duration::from_secs(300)
}
fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}
fn fifteen_minutes() -> Duration {
    Duration::from_secs(900)
}
fn twenty_minutes() -> Duration {
    Duration::from_secs(1200)
}
fn default_out_above() -> f64 {
    0.85
}
fn default_in_below() -> f64 {
    0.30
}

impl Template {
    /// The image nodes boot, as the provisioner takes it (checked: exactly one is set).
    pub fn node_image(&self) -> NodeImage {
        match (&self.image, &self.image_label) {
            (Some(id), _) => NodeImage::Id(id.clone()),
            (None, Some(labels)) => NodeImage::Newest(labels.clone()),
            (None, None) => NodeImage::Id(String::new()),
        }
    }
}

impl CapacitySettings {
    /// Why these settings cannot work, naming the key.
    pub fn check(&self) -> Result<(), CapacityError> {
        let bad =
            |key: &str, why: String| Err(CapacityError::Config(format!("capacity.{key}: {why}")));
        if self.min_nodes > self.max_nodes {
            return bad(
                "min_nodes",
                format!(
                    "{} is more than max_nodes = {}",
                    self.min_nodes, self.max_nodes
                ),
            );
        }
        if !(0.5..1.0).contains(&self.quantile) {
            return bad("quantile", format!("{} must be in [0.5, 1)", self.quantile));
        }
        if !(0.0..=1.0).contains(&self.p_hold) {
            return bad("p_hold", format!("{} must be in [0, 1]", self.p_hold));
        }
        if self.template.image.is_some() == self.template.image_label.is_some() {
            return bad(
                "template.image",
                "name the node image by `image` (a snapshot id) or by `image_label` \
                 (e.g. \"warden-node=1\"), one of the two"
                    .into(),
            );
        }
        if self.template.locations.is_empty() {
            return bad("template.locations", "name at least one location".into());
        }
        if self.template.memory_gb <= 0.0 || self.template.reserve_gb < 0.0 {
            return bad(
                "template.memory_gb",
                "must be above 0 (and reserve_gb not below)".into(),
            );
        }
        if self.hour < Duration::from_secs(1) || self.interval < Duration::from_millis(200) {
            return bad("hour", "hour ≥ 1 s and interval ≥ 200 ms".into());
        }
        if self.delete_window > self.hour {
            return bad("delete_window", "cannot be longer than an hour".into());
        }
        if !(0.0..1.0).contains(&self.scale_in_below)
            || !(0.0..=1.0).contains(&self.scale_out_above)
            || self.scale_in_below >= self.scale_out_above
        {
            return bad(
                "scale_in_below",
                "need 0 ≤ scale_in_below < scale_out_above ≤ 1".into(),
            );
        }
        if let Spares::Schedule(map) = &self.spares {
            if let Some(k) = map
                .keys()
                .find(|k| *k != "default" && !DAYS.contains(&k.as_str()))
            {
                return bad(
                    "spares",
                    format!("`{k}` is not mon, tue, wed, thu, fri, sat, sun or default"),
                );
            }
        }
        if let Some(b) = self.budget_per_day {
            if b.is_nan() || b < 0.0 {
                return bad("budget_per_day", "must be ≥ 0 euros".into());
            }
        }
        if self.provider == Provider::Hetzner && std::env::var(&self.token_env).is_err() {
            return bad(
                "token_env",
                format!(
                    "provider = \"hetzner\" needs the API token in ${}",
                    self.token_env
                ),
            );
        }
        std::fs::read_to_string(&self.template.user_data).map_err(|e| {
            CapacityError::Config(format!(
                "capacity.template.user_data: cannot read {}: {e}",
                self.template.user_data.display()
            ))
        })?;
        Ok(())
    }

    /// `{name}`, `{memory_gb}`, `{server_type}`, `{location}`, `{pool}` in `template`.
    pub fn render(
        &self,
        template: &str,
        name: &str,
        memory_gb: f64,
        server_type: &str,
        location: &str,
    ) -> String {
        template
            .replace("{name}", name)
            .replace("{memory_gb}", &format!("{memory_gb:.1}"))
            .replace("{server_type}", server_type)
            .replace("{location}", location)
            .replace("{pool}", &self.pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_follow_the_weekday() {
        let s = Spares::Schedule(BTreeMap::from([
            ("default".to_string(), 1),
            ("fri".to_string(), 3),
        ]));
        // 1970-01-02 was a Friday, 1970-01-03 a Saturday.
        assert_eq!(s.at(86_400_000 + 5), 3);
        assert_eq!(s.at(2 * 86_400_000 + 5), 1);
        assert_eq!(Spares::Count(2).at(0), 2);
    }

    fn with_image(image: &str) -> Result<(), CapacityError> {
        let text = format!(
            "provider = \"dry-run\"\n[template]\nlocations = [\"fsn1\"]\n\
             user_data = \"u.yaml\"\n{image}"
        );
        let s: CapacitySettings =
            toml::from_str(&text).map_err(|e| CapacityError::Config(e.to_string()))?;
        s.check()
    }

    #[test]
    fn the_node_image_is_named_by_id_or_by_label_never_both_or_neither() {
        for ok in ["image = \"7\"", "image_label = \"warden-node=1\""] {
            match with_image(ok) {
                Ok(()) => {}
                // Only the unreadable user data may be left to complain about.
                Err(e) => assert!(e.to_string().contains("user_data"), "{ok}: {e}"),
            }
        }
        for bad in ["", "image = \"7\"\nimage_label = \"warden-node=1\""] {
            let e = with_image(bad).unwrap_err().to_string();
            assert!(e.contains("capacity.template.image"), "{bad}: {e}");
        }
    }
}
