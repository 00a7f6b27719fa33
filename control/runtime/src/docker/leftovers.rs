//! The containers and volumes a fleet made on a daemon, for the collector: which server each
//! was made for, how old it is, whether it runs. Only what carries this fleet's
//! `warden.fleet` label is listed, so containers of another fleet (or of a second appliance
//! with its own store) on the same daemon are never considered.

use std::collections::HashMap;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};

use super::client::{status_of, DockerClient};
use super::discover::container_name;
use super::spec::{FLEET_LABEL, SERVER_LABEL};
use crate::RuntimeError;

/// A container or a volume made by Warden for one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// `container` or `volume`.
    pub kind: &'static str,
    pub name: String,
    /// The server it was made for (its `warden.server` label).
    pub server: Option<String>,
    /// When the daemon created it, if it says.
    pub created_unix_ms: Option<u64>,
    /// A running container (never removed); always false for volumes.
    pub running: bool,
}

/// Every container (running or not) and volume labelled with `fleet`.
pub async fn made_by(client: &DockerClient, fleet: &str) -> Result<Vec<Made>, RuntimeError> {
    let label = format!("{FLEET_LABEL}={fleet}");
    let filters = HashMap::from([("label", vec![label.as_str()])]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = client
        .call(
            "list the fleet's containers",
            client.docker.list_containers(Some(opts)),
        )
        .await?;
    let mut out = Vec::new();
    for c in containers {
        let Some(name) = container_name(&c) else {
            continue;
        };
        out.push(Made {
            kind: "container",
            name,
            server: c.labels.as_ref().and_then(|l| l.get(SERVER_LABEL)).cloned(),
            created_unix_ms: c
                .created
                .and_then(|s| u64::try_from(s).ok())
                .map(|s| s * 1000),
            running: matches!(
                c.state,
                Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                    | Some(bollard::models::ContainerSummaryStateEnum::RESTARTING)
                    | Some(bollard::models::ContainerSummaryStateEnum::PAUSED)
            ),
        });
    }
    let opts = ListVolumesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let volumes = client
        .call(
            "list the fleet's volumes",
            client.docker.list_volumes(Some(opts)),
        )
        .await?;
    for v in volumes.volumes.unwrap_or_default() {
        out.push(Made {
            kind: "volume",
            server: v.labels.get(SERVER_LABEL).cloned(),
            created_unix_ms: v.created_at.as_deref().and_then(unix_ms),
            name: v.name,
            running: false,
        });
    }
    out.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    Ok(out)
}

/// Removes a stopped container or an unused volume; one already gone counts as removed.
/// The daemon refuses a running container and a volume still mounted by one.
pub async fn remove(client: &DockerClient, made: &Made) -> Result<(), RuntimeError> {
    let what = format!("remove {} {}", made.kind, made.name);
    let r = if made.kind == "container" {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(false)
            .build();
        client
            .call_raw(
                &what,
                client.limit,
                client.docker.remove_container(&made.name, Some(opts)),
            )
            .await?
    } else {
        let opts = RemoveVolumeOptionsBuilder::default().force(false).build();
        client
            .call_raw(
                &what,
                client.limit,
                client.docker.remove_volume(&made.name, Some(opts)),
            )
            .await?
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        Err(e) => Err(client.error(&what, e)),
    }
}

/// The daemon's RFC 3339 time (`2026-12-01T04:16:38Z`, fractions allowed) as unix ms;
/// None for anything else (an unknown age is never collected).
fn unix_ms(text: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(text.trim()).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(d.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::unix_ms;

    #[test]
    fn daemon_times_parse_or_are_unknown() {
        assert_eq!(unix_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(unix_ms("2026-12-01T04:16:38.5Z"), Some(1_796_098_598_500));
        assert_eq!(unix_ms("yesterday"), None);
        assert_eq!(unix_ms(""), None);
    }
}
