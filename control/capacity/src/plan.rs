//! The decision, as a pure function of what the fleet looks like now: how much RAM will be
//! wanted within the lead time (the forecast's planning quantile, and a reactive guard
//! from what is in use and waiting), the hot spares to keep, and the limits. Out: buy
//! nodes, take a drain back, drain a node, give an empty drained one back, or hold. Each
//! decision carries its reason with the numbers, as operators read it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A node of the fleet as the controller sees it (and `/v1/capacity` shows it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub id: String,
    pub memory_gb: f64,
    pub allocated_gb: f64,
    pub waiting_gb: f64,
    pub servers: u32,
    /// Ready, alive, with the node role: takes servers.
    pub ready: bool,
    pub draining: bool,
    /// The cloud server behind it, if this controller's pool bought it.
    pub cloud: Option<CloudNode>,
}

/// A cloud server of the pool: its id at the cloud, when it was created (billing starts),
/// and its price per hour (EUR, gross).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CloudNode {
    pub id: u64,
    pub created_ms: u64,
    pub hourly_price: f64,
}

/// Everything one decision depends on.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub now_ms: u64,
    pub hour_ms: u64,
    pub nodes: Vec<NodeView>,
    /// Memory of nodes bought that have not joined yet.
    pub pending_gb: Vec<f64>,
    /// The forecast's planning quantile, highest over the next lead time and hour, GB.
    pub forecast_gb: Option<f64>,
    /// The forecast's planning quantile, highest until a node drained now could be back
    /// (the next hour and the lead time), GB: a node is kept while this needs it, so a
    /// shorter scale-out window does not drain what was just bought.
    pub keep_gb: Option<f64>,
    /// RAM that will be asked for within the lead time beyond what is in use now (recent
    /// growth × lead), GB.
    pub growth_gb: f64,
    pub lead_ms: u64,
    pub spares: usize,
    /// Memory a bought node offers, GB.
    pub node_gb: f64,
    pub min_nodes: usize,
    pub max_nodes: usize,
    pub scale_out_above: f64,
    /// Use has been below `scale_in_below` for `scale_in_after` (the reactive rule).
    pub low_for_long: bool,
    pub scale_in_below: f64,
    pub delete_window_ms: u64,
    /// Nodes that may still be bought today within the budget (None: no cap).
    pub budget_nodes: Option<usize>,
    pub quantile: f64,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    ScaleOut {
        count: usize,
        reason: String,
    },
    /// A draining node the fleet needs again is made ready (cheaper than buying).
    Undrain {
        node: String,
        reason: String,
    },
    Drain {
        node: String,
        reason: String,
    },
    /// Give a drained, empty, bought node back to the cloud.
    Delete {
        node: String,
        cloud_id: u64,
        reason: String,
    },
    Hold {
        reason: String,
    },
}

impl Decision {
    /// `scale_out`, `undrain`, `drain`, `delete` or `hold`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::ScaleOut { .. } => "scale_out",
            Decision::Undrain { .. } => "undrain",
            Decision::Drain { .. } => "drain",
            Decision::Delete { .. } => "delete",
            Decision::Hold { .. } => "hold",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::ScaleOut { reason, .. }
            | Decision::Undrain { reason, .. }
            | Decision::Drain { reason, .. }
            | Decision::Delete { reason, .. }
            | Decision::Hold { reason } => reason,
        }
    }

    /// `kind: reason`, the line events and logs carry.
    pub fn line(&self) -> String {
        format!("{}: {}", self.kind(), self.reason())
    }
}

/// Minutes, for reasons.
fn mins(ms: u64) -> String {
    let m = ms as f64 / 60_000.0;
    if m >= 1.0 {
        format!("{m:.0} min")
    } else {
        format!("{:.0} s", ms as f64 / 1000.0)
    }
}

/// The decisions for `i`, in the order they are to be carried out.
pub fn decide(i: &Inputs) -> Vec<Decision> {
    let ready: Vec<&NodeView> = i.nodes.iter().filter(|n| n.ready).collect();
    let capacity: f64 =
        ready.iter().map(|n| n.memory_gb).sum::<f64>() + i.pending_gb.iter().sum::<f64>();
    let used: f64 = i.nodes.iter().map(|n| n.allocated_gb).sum();
    let waiting: f64 = i.nodes.iter().map(|n| n.waiting_gb).sum();
    let free = (capacity - used).max(0.0);
    let empty = ready
        .iter()
        .filter(|n| n.servers == 0 && n.allocated_gb <= 0.0)
        .count()
        + i.pending_gb.len();
    let count = ready.len() + i.pending_gb.len();
    // The guard covers what the forecast did not see: while demand stays within the
    // forecast, the forecast already holds its growth (extrapolating a wave that arrives
    // as forecast would buy a node for a peak that is not coming).
    let growth = match i.forecast_gb {
        Some(f) if used + waiting <= f => 0.0,
        _ => i.growth_gb,
    };
    let guard = used + waiting + growth;
    let need = i.forecast_gb.unwrap_or(0.0).max(guard);
    // Why more is needed, most pressing first.
    let mut out_nodes = 0usize;
    let mut why = String::new();
    if waiting > 0.0 {
        out_nodes = out_nodes.max(nodes_for(used + waiting - capacity, i.node_gb).max(1));
        why = format!("{waiting:.1} GB of wakes wait for room, free {free:.1} GB");
    }
    if need > capacity && out_nodes < nodes_for(need - capacity, i.node_gb) {
        out_nodes = nodes_for(need - capacity, i.node_gb);
        why = match i.forecast_gb {
            Some(f) if f >= guard => format!(
                "forecast {f:.1} GB at q{} in {} > capacity {capacity:.1} GB (free {free:.1} GB)",
                i.quantile,
                mins(i.lead_ms)
            ),
            _ => format!(
                "in use {used:.1} GB + waiting {waiting:.1} GB + growth {growth:.1} GB within {} > capacity {capacity:.1} GB",
                mins(i.lead_ms)
            ),
        };
    }
    if capacity > 0.0 && used / capacity > i.scale_out_above && out_nodes == 0 {
        out_nodes = 1;
        why = format!(
            "{:.0} % of RAM in use > {:.0} %",
            100.0 * used / capacity,
            100.0 * i.scale_out_above
        );
    }
    // Spares on top of demand: nodes bought for demand are not spares.
    let spare_gap = i.spares.saturating_sub(empty);
    if spare_gap > 0 && out_nodes < spare_gap {
        if why.is_empty() {
            why = format!("hot spares {empty} < {}", i.spares);
        } else {
            why.push_str(&format!("; hot spares {empty} < {}", i.spares));
        }
        out_nodes = spare_gap;
    }
    if count < i.min_nodes && out_nodes < i.min_nodes - count {
        out_nodes = i.min_nodes - count;
        why = format!("{count} nodes < min_nodes {}", i.min_nodes);
    }

    let mut decisions = Vec::new();
    if out_nodes > 0 {
        // A draining node comes back before anything is bought.
        for n in i.nodes.iter().filter(|n| n.draining) {
            if out_nodes == 0 {
                break;
            }
            decisions.push(Decision::Undrain {
                node: n.id.clone(),
                reason: format!("needed again: {why}"),
            });
            out_nodes -= 1;
        }
    }
    if out_nodes > 0 {
        let room = i.max_nodes.saturating_sub(count);
        let mut n = out_nodes.min(room);
        let mut limit = String::new();
        if n < out_nodes {
            limit = format!(" (capped at max_nodes {})", i.max_nodes);
        }
        if let Some(b) = i.budget_nodes {
            if b < n {
                n = b;
                limit = " (capped by the daily budget)".into();
            }
        }
        if n > 0 {
            decisions.push(Decision::ScaleOut {
                count: n,
                reason: format!("{why}{limit}"),
            });
        } else {
            decisions.push(Decision::Hold {
                reason: format!("would buy {out_nodes} node(s) ({why}){limit}"),
            });
        }
        return decisions;
    }

    // Give back: an empty drained bought node near the end of its paid hour.
    for n in i
        .nodes
        .iter()
        .filter(|n| n.draining && n.servers == 0 && n.allocated_gb <= 0.0)
    {
        if let Some(c) = &n.cloud {
            let into = i.now_ms.saturating_sub(c.created_ms) % i.hour_ms.max(1);
            if i.hour_ms - into <= i.delete_window_ms {
                decisions.push(Decision::Delete {
                    node: n.id.clone(),
                    cloud_id: c.id,
                    reason: format!(
                        "drained and empty, {} left of its paid hour",
                        mins(i.hour_ms - into)
                    ),
                });
            }
        }
    }
    // Drain one bought node when the rest still hold what is needed and the spares, and
    // use has been low long enough. The emptiest goes first.
    // Never while demand grows or anyone waits for room: a wave under way is not a lull.
    let already_draining = i.nodes.iter().any(|n| n.draining);
    let calm = i.growth_gb <= 0.0 && waiting <= 0.0;
    if !already_draining && calm && count > i.min_nodes {
        let mut bought: Vec<&&NodeView> = ready.iter().filter(|n| n.cloud.is_some()).collect();
        bought.sort_by(|a, b| a.allocated_gb.total_cmp(&b.allocated_gb));
        if let Some(n) = bought.first() {
            let left = capacity - n.memory_gb;
            let is_empty = n.servers == 0 && n.allocated_gb <= 0.0;
            let spares_left = empty - usize::from(is_empty);
            let keep = need.max(i.keep_gb.unwrap_or(0.0));
            let fits = left >= keep && left - used >= 0.0;
            if fits && spares_left >= i.spares && i.low_for_long {
                decisions.push(Decision::Drain {
                    node: n.id.clone(),
                    reason: format!(
                        "use below {:.0} % for long, capacity without it {left:.1} GB ≥ need {keep:.1} GB over the next hour, hot spares {spares_left} ≥ {}",
                        100.0 * i.scale_in_below,
                        i.spares
                    ),
                });
            }
        }
    }
    if decisions.is_empty() {
        decisions.push(Decision::Hold {
            reason: format!(
                "need {need:.1} GB ≤ capacity {capacity:.1} GB, hot spares {empty} ≥ {}",
                i.spares
            ),
        });
    }
    decisions
}

/// Nodes of `node_gb` for `gb` more.
fn nodes_for(gb: f64, node_gb: f64) -> usize {
    if gb <= 1e-9 || node_gb <= 0.0 {
        return 0;
    }
    (gb / node_gb - 1e-9).ceil() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, gb: f64, used: f64, servers: u32, cloud: bool) -> NodeView {
        NodeView {
            id: id.into(),
            memory_gb: gb,
            allocated_gb: used,
            waiting_gb: 0.0,
            servers,
            ready: true,
            draining: false,
            cloud: cloud.then_some(CloudNode {
                id: 7,
                created_ms: 0,
                hourly_price: 0.02,
            }),
        }
    }

    fn inputs(nodes: Vec<NodeView>) -> Inputs {
        Inputs {
            now_ms: 0,
            hour_ms: 3_600_000,
            nodes,
            pending_gb: vec![],
            forecast_gb: None,
            keep_gb: None,
            growth_gb: 0.0,
            lead_ms: 300_000,
            spares: 0,
            node_gb: 7.0,
            min_nodes: 1,
            max_nodes: 10,
            scale_out_above: 0.85,
            low_for_long: false,
            scale_in_below: 0.3,
            delete_window_ms: 600_000,
            budget_nodes: None,
            quantile: 0.9,
        }
    }

    #[test]
    fn a_forecast_above_capacity_buys_enough_nodes_with_the_numbers() {
        let mut i = inputs(vec![node("a", 4.0, 2.0, 1, false)]);
        i.forecast_gb = Some(12.0);
        let d = decide(&i);
        assert_eq!(d.len(), 1);
        match &d[0] {
            Decision::ScaleOut { count, reason } => {
                assert_eq!(*count, 2, "8 GB more in 7 GB nodes");
                assert!(
                    reason.contains("forecast 12.0 GB at q0.9 in 5 min > capacity 4.0 GB"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Pending nodes count: nothing more is bought while they boot.
        i.pending_gb = vec![7.0, 7.0];
        assert_eq!(decide(&i)[0].kind(), "hold");
    }

    #[test]
    fn waiting_wakes_and_hot_spares_buy_and_limits_cap() {
        let mut a = node("a", 4.0, 4.0, 2, false);
        a.waiting_gb = 2.0;
        let mut i = inputs(vec![a]);
        assert!(
            matches!(&decide(&i)[0], Decision::ScaleOut { count: 1, reason } if reason.contains("wait"))
        );
        i.nodes[0].waiting_gb = 0.0;
        i.nodes[0].allocated_gb = 1.0;
        i.spares = 2;
        assert!(
            matches!(&decide(&i)[0], Decision::ScaleOut { count: 2, reason } if reason.contains("hot spares 0 < 2"))
        );
        i.max_nodes = 2;
        assert!(
            matches!(&decide(&i)[0], Decision::ScaleOut { count: 1, reason } if reason.contains("max_nodes"))
        );
        i.budget_nodes = Some(0);
        assert_eq!(decide(&i)[0].kind(), "hold");
    }

    #[test]
    fn growth_within_the_forecast_buys_nothing_more_growth_beyond_it_does() {
        let mut i = inputs(vec![node("a", 4.0, 3.0, 3, false)]);
        i.growth_gb = 3.0;
        i.scale_out_above = 1.0;
        // The wave arrives as forecast (3 of 3.5 GB): its growth is the forecast's.
        i.forecast_gb = Some(3.5);
        assert_eq!(decide(&i)[0].kind(), "hold");
        // Beyond the forecast: the guard extrapolates and buys.
        i.forecast_gb = Some(2.0);
        let d = decide(&i);
        assert!(
            matches!(&d[0], Decision::ScaleOut { reason, .. } if reason.contains("growth 3.0 GB")),
            "{d:?}"
        );
        // No forecast yet: reactive only.
        i.forecast_gb = None;
        assert_eq!(decide(&i)[0].kind(), "scale_out");
    }

    #[test]
    fn an_unneeded_bought_node_is_drained_then_given_back_at_the_end_of_its_hour() {
        let mut i = inputs(vec![
            node("a", 8.0, 2.0, 1, false),
            node("b", 7.0, 0.0, 0, true),
        ]);
        // Empty, but use has not been low for long: kept (it may have just been bought).
        assert_eq!(decide(&i)[0].kind(), "hold");
        i.low_for_long = true;
        let d = decide(&i);
        assert!(
            matches!(&d[0], Decision::Drain { node, .. } if node == "b"),
            "{d:?}"
        );
        // Not while the forecast needs it, now or within the next hour.
        i.forecast_gb = Some(9.0);
        assert_eq!(decide(&i)[0].kind(), "hold");
        i.forecast_gb = None;
        i.keep_gb = Some(9.0);
        assert_eq!(decide(&i)[0].kind(), "hold");
        i.keep_gb = None;
        // Drained: deleted only within the window before the next paid hour.
        i.nodes[1].ready = false;
        i.nodes[1].draining = true;
        i.now_ms = 20 * 60_000;
        assert_eq!(decide(&i)[0].kind(), "hold");
        i.now_ms = 55 * 60_000;
        assert!(matches!(
            &decide(&i)[0],
            Decision::Delete { cloud_id: 7, .. }
        ));
        // Never with a server on it.
        i.nodes[1].servers = 1;
        assert_eq!(decide(&i)[0].kind(), "hold");
        // Needed again: undrained, not bought.
        i.nodes[1].servers = 0;
        i.forecast_gb = Some(12.0);
        assert_eq!(decide(&i)[0].kind(), "undrain");
    }

    #[test]
    fn a_node_with_players_drains_only_after_use_was_low_long_enough() {
        let mut i = inputs(vec![
            node("a", 8.0, 1.0, 1, false),
            node("b", 7.0, 1.0, 1, true),
        ]);
        assert_eq!(decide(&i)[0].kind(), "hold");
        i.low_for_long = true;
        assert_eq!(decide(&i)[0].kind(), "drain");
        // Not while demand grows (a wave arriving on a quiet fleet) or anyone waits.
        i.growth_gb = 0.5;
        assert_eq!(decide(&i)[0].kind(), "hold");
        i.growth_gb = 0.0;
        i.nodes[0].waiting_gb = 0.5;
        assert_ne!(decide(&i)[0].kind(), "drain");
        i.nodes[0].waiting_gb = 0.0;
        // Never below min_nodes.
        i.min_nodes = 2;
        assert_eq!(decide(&i)[0].kind(), "hold");
    }
}
