//! Capacity planning for hourly-billed cloud nodes. Hetzner bills every
//! started hour in full and keeps billing until a server is deleted, so a node
//! is bought ahead of forecast demand (boot + warm-up lead time) and released
//! only when it is empty and its paid hour is about to run out.

/// Planner settings.
#[derive(Debug, Clone)]
pub struct PlannerConfig {
    /// Game-server slots one node holds (node RAM ÷ server RAM).
    pub slots_per_node: usize,
    /// Minutes from "create" to a joinable server: boot p95 + game warm-up.
    pub lead_minutes: i64,
    /// A node may be deleted only within this many minutes before its next billed hour starts.
    pub scale_in_window: i64,
    /// Upper bound on nodes, e.g. the project's server limit.
    pub max_nodes: usize,
}

/// Billed hours of a node alive over `[created, deleted)` minutes: every started hour counts.
pub fn billed_hours(created: i64, deleted: i64) -> i64 {
    let alive = (deleted - created).max(0);
    // a server that existed at all is billed at least one hour
    ((alive + 59) / 60).max(1)
}

/// Minutes already used of the node's current billed hour.
pub fn minutes_into_hour(created: i64, now: i64) -> i64 {
    (now - created).rem_euclid(60)
}

/// Nodes needed to hold `slots` servers.
pub fn nodes_for(slots: f64, slots_per_node: usize) -> usize {
    if slots <= 0.0 || slots_per_node == 0 {
        return 0;
    }
    // tolerate float noise just above an integer
    ((slots - 1e-9) / slots_per_node as f64).ceil() as usize
}

/// One hour of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct HourPlan {
    pub hour: usize,
    /// Nodes to hold so the planning quantile of demand fits.
    pub nodes: usize,
    /// Nodes beyond what the point forecast needs: the price of the quantile.
    pub spare: usize,
}

/// Nodes and spare nodes per forecast hour. Each hour also covers the first
/// `lead` minutes of the next one, since those nodes must already be booting.
pub fn hourly_plan(point: &[f64], upper: &[f64], cfg: &PlannerConfig) -> Vec<HourPlan> {
    (0..upper.len())
        .map(|h| {
            let next = upper.get(h + 1).copied().unwrap_or(upper[h]);
            let need = if cfg.lead_minutes > 0 {
                upper[h].max(next)
            } else {
                upper[h]
            };
            let nodes = nodes_for(need, cfg.slots_per_node).min(cfg.max_nodes);
            let base = nodes_for(point.get(h).copied().unwrap_or(0.0), cfg.slots_per_node);
            HourPlan {
                hour: h + 1,
                nodes,
                spare: nodes.saturating_sub(base),
            }
        })
        .collect()
}

/// What the planner sees of one node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeView {
    pub id: usize,
    /// Minute the node was created (billing starts).
    pub created: i64,
    pub ready: bool,
    /// Occupied slots.
    pub used: usize,
}

/// The planner's inputs at one minute.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    pub now: i64,
    pub nodes: &'a [NodeView],
    /// Slots demand will need by `now + lead` (forecast quantile or, for the oracle, the truth).
    pub need_soon: f64,
    /// Slots demand will need at any time in the next billed hour + lead.
    pub need_hour: f64,
    /// Servers expected to join during the lead time (for the reactive guard).
    pub joins_in_lead: f64,
}

/// A scaling decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create(usize),
    Delete(usize),
}

/// Decides creations and deletions for this minute.
pub fn decide(s: &Situation, cfg: &PlannerConfig) -> Vec<Action> {
    let slots = cfg.slots_per_node;
    let have = s.nodes.len();
    let used: usize = s.nodes.iter().map(|n| n.used).sum();
    let capacity = have * slots;
    let mut out = Vec::new();
    // scale out ahead of demand
    let want = nodes_for(s.need_soon.max(used as f64), slots);
    let mut create = want.saturating_sub(have);
    // reactive guard: what joins during the lead time must find a slot
    let free = capacity.saturating_sub(used) as f64;
    if free < s.joins_in_lead {
        create = create.max(nodes_for(s.joins_in_lead - free, slots));
    }
    let create = create.min(cfg.max_nodes.saturating_sub(have));
    if create > 0 {
        out.push(Action::Create(create));
        return out;
    }
    // scale in: only empty nodes at the end of their paid hour, and only
    // what the next hour will not need anyway
    let keep = nodes_for(s.need_hour.max(used as f64 + s.joins_in_lead), slots);
    let mut surplus = have.saturating_sub(keep);
    let mut idle: Vec<&NodeView> = s
        .nodes
        .iter()
        .filter(|n| {
            n.ready
                && n.used == 0
                && minutes_into_hour(n.created, s.now) >= 60 - cfg.scale_in_window
        })
        .collect();
    // the node whose paid hour ends first goes first
    idle.sort_by_key(|n| std::cmp::Reverse(minutes_into_hour(n.created, s.now)));
    for n in idle {
        if surplus == 0 {
            break;
        }
        out.push(Action::Delete(n.id));
        surplus -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PlannerConfig {
        PlannerConfig {
            slots_per_node: 8,
            lead_minutes: 6,
            scale_in_window: 5,
            max_nodes: 100,
        }
    }

    fn node(id: usize, created: i64, used: usize) -> NodeView {
        NodeView {
            id,
            created,
            ready: true,
            used,
        }
    }

    #[test]
    fn billing_counts_started_hours() {
        assert_eq!(billed_hours(0, 1), 1);
        assert_eq!(billed_hours(0, 60), 1);
        assert_eq!(billed_hours(0, 61), 2);
        assert_eq!(billed_hours(10, 10), 1);
        assert_eq!(minutes_into_hour(7, 7 + 125), 5);
    }

    #[test]
    fn node_counts() {
        assert_eq!(nodes_for(0.0, 8), 0);
        assert_eq!(nodes_for(8.0, 8), 1);
        assert_eq!(nodes_for(8.2, 8), 2);
        assert_eq!(nodes_for(16.000_000_000_1, 8), 2);
    }

    #[test]
    fn plan_covers_next_hour_and_counts_spares() {
        let p = hourly_plan(&[4.0, 10.0, 2.0], &[9.0, 20.0, 3.0], &cfg());
        assert_eq!(
            p[0],
            HourPlan {
                hour: 1,
                nodes: 3,
                spare: 2
            }
        );
        assert_eq!(p[1].nodes, 3);
        assert_eq!(p[2].nodes, 1);
        assert_eq!(p[2].spare, 0);
    }

    #[test]
    fn scales_out_ahead_and_by_guard() {
        let nodes = [node(0, 0, 7)];
        let s = Situation {
            now: 30,
            nodes: &nodes,
            need_soon: 20.0,
            need_hour: 20.0,
            joins_in_lead: 0.0,
        };
        assert_eq!(decide(&s, &cfg()), vec![Action::Create(2)]);
        // forecast says little, but 10 joins are coming with 1 free slot
        let s = Situation {
            need_soon: 1.0,
            need_hour: 1.0,
            joins_in_lead: 10.0,
            ..s
        };
        assert_eq!(decide(&s, &cfg()), vec![Action::Create(2)]);
    }

    #[test]
    fn scales_in_only_empty_nodes_at_hour_end() {
        let nodes = [node(0, 0, 3), node(1, 0, 0), node(2, 20, 0)];
        let mut s = Situation {
            now: 50,
            nodes: &nodes,
            need_soon: 3.0,
            need_hour: 3.0,
            joins_in_lead: 0.0,
        };
        // minute 50 of node 1's hour: too early
        assert!(decide(&s, &cfg()).is_empty());
        s.now = 56;
        assert_eq!(decide(&s, &cfg()), vec![Action::Delete(1)]);
        // node 2 created at 20 is at minute 56 of its hour at now = 76
        s.now = 76;
        assert_eq!(decide(&s, &cfg()), vec![Action::Delete(2)]);
        // the next hour needs all three nodes: keep the empty ones
        s.need_hour = 20.0;
        assert!(decide(&s, &cfg()).is_empty());
    }

    #[test]
    fn respects_max_nodes() {
        let nodes = [node(0, 0, 8)];
        let s = Situation {
            now: 0,
            nodes: &nodes,
            need_soon: 1000.0,
            need_hour: 1000.0,
            joins_in_lead: 0.0,
        };
        let c = PlannerConfig {
            max_nodes: 4,
            ..cfg()
        };
        assert_eq!(decide(&s, &c), vec![Action::Create(3)]);
    }
}
