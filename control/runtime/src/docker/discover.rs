//! Finding servers from container labels, so an operator can adopt existing containers by
//! labelling them (`warden.host=mc.example.org`) instead of writing config.

use std::collections::HashMap;

use bollard::query_parameters::ListContainersOptionsBuilder;
use tracing::warn;

use super::client::DockerClient;
use crate::RuntimeError;

pub const HOST_LABEL: &str = "warden.host";
pub const PORT_LABEL: &str = "warden.port";
pub const SLEEP_AFTER_LABEL: &str = "warden.sleep_after";
pub const MEMORY_LABEL: &str = "warden.memory_gb";

/// A labelled container. Malformed optional labels are dropped (and logged) rather than
/// hiding the whole server.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredServer {
    /// Container name without Docker's leading `/`.
    pub container: String,
    pub image: String,
    pub host: String,
    pub port: Option<u16>,
    /// As written, e.g. `"10m"`; the lifecycle parses durations.
    pub sleep_after: Option<String>,
    pub memory_gb: Option<f64>,
    pub running: bool,
}

/// A listed container's name (without Docker's leading `/`), or its id.
pub(crate) fn container_name(c: &bollard::models::ContainerSummary) -> Option<String> {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .or(c.id.clone())
}

/// Every container, running or not, that carries `warden.host`.
pub async fn discover(client: &DockerClient) -> Result<Vec<DiscoveredServer>, RuntimeError> {
    let filters = HashMap::from([("label", vec![HOST_LABEL])]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = client
        .call(
            "list labelled containers",
            client.docker.list_containers(Some(opts)),
        )
        .await?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let name = container_name(&c)?;
            let running = matches!(
                c.state,
                Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
            );
            let image = c.image.clone().unwrap_or_default();
            from_labels(name, image, c.labels.as_ref()?, running)
        })
        .collect())
}

/// The pure part of discovery.
pub(crate) fn from_labels(
    container: String,
    image: String,
    labels: &HashMap<String, String>,
    running: bool,
) -> Option<DiscoveredServer> {
    let host = labels.get(HOST_LABEL)?.trim();
    if host.is_empty() {
        warn!(%container, "ignoring container with an empty {HOST_LABEL} label");
        return None;
    }
    let parsed = |key: &str| labels.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let port = parsed(PORT_LABEL).and_then(|v| match v.parse::<u16>() {
        Ok(p) if p > 0 => Some(p),
        _ => {
            warn!(%container, value = v, "ignoring bad {PORT_LABEL} label");
            None
        }
    });
    let memory_gb = parsed(MEMORY_LABEL).and_then(|v| match v.parse::<f64>() {
        Ok(g) if g.is_finite() && g > 0.0 => Some(g),
        _ => {
            warn!(%container, value = v, "ignoring bad {MEMORY_LABEL} label");
            None
        }
    });
    Some(DiscoveredServer {
        host: host.to_string(),
        port,
        sleep_after: parsed(SLEEP_AFTER_LABEL).map(str::to_string),
        memory_gb,
        running,
        container,
        image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_all_labels() {
        let l = labels(&[
            (HOST_LABEL, "mc.example.org"),
            (PORT_LABEL, "25570"),
            (SLEEP_AFTER_LABEL, "10m"),
            (MEMORY_LABEL, "4.5"),
        ]);
        assert_eq!(
            from_labels("srv".into(), "img".into(), &l, true),
            Some(DiscoveredServer {
                container: "srv".into(),
                image: "img".into(),
                host: "mc.example.org".into(),
                port: Some(25570),
                sleep_after: Some("10m".into()),
                memory_gb: Some(4.5),
                running: true,
            })
        );
    }

    #[test]
    fn bad_optional_labels_are_dropped_not_fatal() {
        let l = labels(&[
            (HOST_LABEL, "a.example"),
            (PORT_LABEL, "99999"),
            (MEMORY_LABEL, "NaN"),
            (SLEEP_AFTER_LABEL, " "),
        ]);
        let d = from_labels("srv".into(), "img".into(), &l, false).unwrap();
        assert_eq!((d.port, d.memory_gb, d.sleep_after), (None, None, None));
        assert_eq!(
            from_labels(
                "x".into(),
                "img".into(),
                &labels(&[(HOST_LABEL, " ")]),
                false
            ),
            None
        );
        assert_eq!(
            from_labels("x".into(), "img".into(), &labels(&[]), false),
            None
        );
    }
}
