//! The images the fake holds: two system images and the node snapshots a test sets up
//! (`--snapshot ID:key=value,…`, or `POST /_fake/snapshots` at run time), so
//! `GET /v1/images` can be asked for the newest node snapshot and a create must name an
//! image that exists, as at Hetzner.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::time::rfc3339;

/// A snapshot to hold from the start: its id and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub id: u64,
    pub labels: BTreeMap<String, String>,
}

impl Snapshot {
    /// The fake's snapshot when none is given: id 1001, labelled `warden-node=1`.
    pub fn default_node() -> Snapshot {
        Snapshot {
            id: 1001,
            labels: BTreeMap::from([("warden-node".to_string(), "1".to_string())]),
        }
    }
}

/// `ID` or `ID:key=value,key=value` (the `--snapshot` flag's form).
impl FromStr for Snapshot {
    type Err = String;

    fn from_str(s: &str) -> Result<Snapshot, String> {
        let (id, labels) = s.split_once(':').unwrap_or((s, ""));
        let id = id
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("snapshot {s:?}: the id must be a number (ID:key=value,…)"))?;
        let mut out = BTreeMap::new();
        for pair in labels.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k.trim().is_empty() {
                return Err(format!("snapshot {s:?}: label {pair:?} has no key"));
            }
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(Snapshot { id, labels: out })
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { ':' } else { ',' })?;
        }
        Ok(())
    }
}

/// One image as the API shows it.
#[derive(Debug, Clone)]
pub struct Image {
    pub id: u64,
    /// `system` or `snapshot`.
    pub kind: &'static str,
    /// System images have a name (`debian-12`); snapshots have none.
    pub name: Option<String>,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub created: SystemTime,
}

impl Image {
    pub fn snapshot(s: &Snapshot, created: SystemTime) -> Image {
        Image {
            id: s.id,
            kind: "snapshot",
            name: None,
            description: format!("snapshot {}", s.id),
            labels: s.labels.clone(),
            created,
        }
    }

    pub fn json(&self) -> Value {
        let (flavor, version) = match self.name.as_deref() {
            Some(n) => n.split_once('-').unwrap_or((n, "")),
            None => ("debian", "12"),
        };
        json!({
            "id": self.id, "type": self.kind, "status": "available",
            "name": self.name, "description": self.description,
            "image_size": if self.kind == "snapshot" { json!(1.5) } else { Value::Null },
            "disk_size": 10, "created": rfc3339(self.created),
            "created_from": if self.kind == "snapshot" {
                json!({"id": 1, "name": "warden-node-template"})
            } else { Value::Null },
            "bound_to": null, "os_flavor": flavor, "os_version": version,
            "rapid_deploy": self.kind == "system", "protection": {"delete": false},
            "deprecated": null, "deleted": null, "labels": self.labels,
            "architecture": "x86"
        })
    }
}

/// The system images every project sees, created long ago.
pub fn system_images() -> Vec<Image> {
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    [(114_690_387, "debian-12"), (161_547_269, "ubuntu-24.04")]
        .into_iter()
        .map(|(id, name)| Image {
            id,
            kind: "system",
            name: Some(name.to_string()),
            description: name.replace('-', " "),
            labels: BTreeMap::new(),
            created,
        })
        .collect()
}

/// The images a fake starts with: the system images, then `snapshots` one minute apart,
/// the last given the newest (a minute before `now`).
pub fn initial(snapshots: &[Snapshot], now: SystemTime) -> Vec<Image> {
    let mut out = system_images();
    let n = snapshots.len() as u64;
    for (i, s) in snapshots.iter().enumerate() {
        let ago = Duration::from_secs(60 * (n - i as u64));
        out.push(Image::snapshot(s, now.checked_sub(ago).unwrap_or(now)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_form_round_trips() {
        let s: Snapshot = "42:warden-node=1, role=edge".parse().unwrap();
        assert_eq!(s.id, 42);
        assert_eq!(s.labels["role"], "edge");
        assert_eq!(s.to_string(), "42:role=edge,warden-node=1");
        assert_eq!(s.to_string().parse::<Snapshot>().unwrap(), s);
        assert_eq!("7".parse::<Snapshot>().unwrap().to_string(), "7");
        assert!("x:a=b".parse::<Snapshot>().unwrap_err().contains("number"));
        assert!("7:=b".parse::<Snapshot>().unwrap_err().contains("no key"));
    }
}
