//! Where a server goes, and whether a node has room to start one: pure functions over the
//! nodes' capacities and loads, so the rules are tested (and benchmarked) without a store.
//!
//! Placement is best-fit by memory: of the nodes that can take the server (ready, alive,
//! with the `node` role and every label the server asks for), the one it fills most
//! tightly right now, counting the memory of the servers each node runs. A new server is
//! asleep, so a node that is full right now may still own it; if it fits nowhere now, it
//! goes to the node with the most room left (its wake waits for capacity there). A server
//! larger than every candidate's whole capacity is refused with the reason.

use std::collections::BTreeMap;

/// Capacity comparisons tolerate float noise from summing fractional GBs.
const EPSILON_GB: f64 = 1e-9;

/// One node as placement sees it.
#[derive(Debug, Clone)]
pub struct NodeLoad<'a> {
    pub id: &'a str,
    /// Memory for game servers, GB.
    pub capacity_gb: f64,
    /// Memory of the servers it runs now, GB.
    pub allocated_gb: f64,
    /// Servers it owns (running or not): the tie-breaker, so sleeping servers spread.
    pub servers: u32,
    pub labels: &'a BTreeMap<String, String>,
}

impl NodeLoad<'_> {
    fn free_gb(&self) -> f64 {
        self.capacity_gb - self.allocated_gb
    }
}

/// What the server needs from its node.
#[derive(Debug, Clone, Copy)]
pub struct Need<'a> {
    pub memory_gb: f64,
    /// Labels the node must carry, each with this value.
    pub labels: &'a BTreeMap<String, String>,
}

/// Why a server could not be placed.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// No node can take servers (none ready, alive and with the `node` role).
    NoNodes,
    /// Nodes can take servers, but none has every label asked for.
    NoLabels,
    /// Larger than every candidate node: `largest_gb` is the biggest capacity there is.
    TooLarge { largest_gb: f64 },
}

impl Refusal {
    /// The operator's message for a server needing `need_gb`.
    pub fn message(&self, need_gb: f64) -> String {
        match self {
            Refusal::NoNodes => {
                "no node can take servers now (none is ready, alive and has the node role)".into()
            }
            Refusal::NoLabels => "no node has every label the server asks for".into(),
            Refusal::TooLarge { largest_gb } => format!(
                "memory_gb = {need_gb} is more than any node offers (the largest has {largest_gb} GB)"
            ),
        }
    }
}

/// Whether a node with `capacity_gb`, running `allocated_gb`, may start a server needing
/// `need_gb`. A server alone on its node always may (even one larger than the node: it was
/// configured there; refusing would leave it asleep for ever).
pub fn fits(capacity_gb: f64, allocated_gb: f64, need_gb: f64) -> bool {
    allocated_gb <= EPSILON_GB || allocated_gb + need_gb <= capacity_gb + EPSILON_GB
}

/// The node `need` goes on (an index into `nodes`), or why none. `nodes` holds only nodes
/// that can take servers.
pub fn place(nodes: &[NodeLoad<'_>], need: Need<'_>) -> Result<usize, Refusal> {
    if nodes.is_empty() {
        return Err(Refusal::NoNodes);
    }
    let labelled: Vec<usize> = (0..nodes.len())
        .filter(|&i| {
            need.labels
                .iter()
                .all(|(k, v)| nodes[i].labels.get(k) == Some(v))
        })
        .collect();
    if labelled.is_empty() {
        return Err(Refusal::NoLabels);
    }
    let big_enough: Vec<usize> = labelled
        .iter()
        .copied()
        .filter(|&i| nodes[i].capacity_gb + EPSILON_GB >= need.memory_gb)
        .collect();
    if big_enough.is_empty() {
        let largest_gb = labelled
            .iter()
            .map(|&i| nodes[i].capacity_gb)
            .fold(0.0, f64::max);
        return Err(Refusal::TooLarge { largest_gb });
    }
    // Best fit among the nodes with room now: the least room left over.
    let now = big_enough
        .iter()
        .copied()
        .filter(|&i| nodes[i].free_gb() + EPSILON_GB >= need.memory_gb)
        .min_by(|&a, &b| {
            let left = |i: usize| nodes[i].free_gb() - need.memory_gb;
            left(a)
                .total_cmp(&left(b))
                .then(nodes[a].servers.cmp(&nodes[b].servers))
                .then(nodes[a].id.cmp(nodes[b].id))
        });
    if let Some(i) = now {
        return Ok(i);
    }
    // Full everywhere right now: the most room, so its wake waits the least.
    big_enough
        .iter()
        .copied()
        .max_by(|&a, &b| {
            nodes[a]
                .free_gb()
                .total_cmp(&nodes[b].free_gb())
                .then(nodes[b].servers.cmp(&nodes[a].servers))
                .then(nodes[b].id.cmp(nodes[a].id))
        })
        .ok_or(Refusal::NoNodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node<'a>(
        id: &'a str,
        capacity_gb: f64,
        allocated_gb: f64,
        labels: &'a BTreeMap<String, String>,
    ) -> NodeLoad<'a> {
        NodeLoad {
            id,
            capacity_gb,
            allocated_gb,
            servers: 0,
            labels,
        }
    }

    fn need(memory_gb: f64, labels: &BTreeMap<String, String>) -> Need<'_> {
        Need { memory_gb, labels }
    }

    #[test]
    fn best_fit_takes_the_tightest_node_with_room() {
        let none = BTreeMap::new();
        let nodes = [
            node("a", 16.0, 4.0, &none),
            node("b", 8.0, 4.0, &none),
            node("c", 32.0, 0.0, &none),
        ];
        // 4 GB fits all; b is left with 0.
        assert_eq!(place(&nodes, need(4.0, &none)), Ok(1));
        // 6 GB: b has no room now; a leaves 6, c leaves 26.
        assert_eq!(place(&nodes, need(6.0, &none)), Ok(0));
        // 20 GB: only c.
        assert_eq!(place(&nodes, need(20.0, &none)), Ok(2));
    }

    #[test]
    fn ties_go_to_fewer_servers_then_the_id() {
        let none = BTreeMap::new();
        let mut nodes = [node("b", 8.0, 0.0, &none), node("a", 8.0, 0.0, &none)];
        assert_eq!(place(&nodes, need(2.0, &none)), Ok(1), "same load: by id");
        nodes[1].servers = 3;
        assert_eq!(
            place(&nodes, need(2.0, &none)),
            Ok(0),
            "fewer servers first"
        );
    }

    #[test]
    fn full_everywhere_goes_where_most_room_is_left() {
        let none = BTreeMap::new();
        let nodes = [node("a", 8.0, 7.0, &none), node("b", 16.0, 14.0, &none)];
        assert_eq!(place(&nodes, need(4.0, &none)), Ok(1));
    }

    #[test]
    fn labels_constrain_and_size_is_refused_with_the_largest() {
        let eu: BTreeMap<String, String> = [("zone".to_string(), "eu".to_string())].into();
        let us: BTreeMap<String, String> = [("zone".to_string(), "us".to_string())].into();
        let nodes = [node("a", 64.0, 0.0, &us), node("b", 8.0, 0.0, &eu)];
        assert_eq!(place(&nodes, need(4.0, &eu)), Ok(1));
        assert_eq!(
            place(&nodes, need(16.0, &eu)),
            Err(Refusal::TooLarge { largest_gb: 8.0 })
        );
        let asia: BTreeMap<String, String> = [("zone".to_string(), "asia".to_string())].into();
        assert_eq!(place(&nodes, need(1.0, &asia)), Err(Refusal::NoLabels));
        assert_eq!(place(&[], need(1.0, &asia)), Err(Refusal::NoNodes));
        let msg = Refusal::TooLarge { largest_gb: 8.0 }.message(16.0);
        assert!(msg.contains("16") && msg.contains("8 GB"), "{msg}");
    }

    #[test]
    fn a_node_starts_what_fits_and_a_lone_server_always() {
        assert!(fits(8.0, 4.0, 4.0));
        assert!(!fits(8.0, 4.5, 4.0));
        assert!(fits(8.0, 0.0, 12.0), "alone on its node");
        assert!(fits(1.0, 0.7, 0.3), "float sums do not refuse an exact fit");
    }
}
