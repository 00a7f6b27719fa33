//! Trace replay: plays a minute-resolution demand trace through scaling
//! policies with realistic boot times and Hetzner's hourly billing, to price
//! the forecast against static, reactive and clairvoyant provisioning.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::calendar::Calendar;
use crate::chain::{ChainConfig, Forecaster};
use crate::error::{Error, Result};
use crate::ingest::Session;
use crate::metrics;
use crate::occupancy::Occupancy;
use crate::planner::{self, Action, NodeView, PlannerConfig, Situation};
use crate::series::MinuteTrace;

/// The provisioning policies compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Enough nodes for the peak of the history before the replay, all the
    /// time (it never sees the window it is scored on).
    StaticPeak,
    /// The seed's rule: one node out above 85 % of slots used; below 30 %
    /// for 20 minutes, one node drained (no new servers) and deleted when
    /// empty, then another 20 minutes before the next.
    Reactive,
    /// The planner fed with the forecast quantile plus the reactive guard.
    Forecast,
    /// The planner fed with the true future, and knowing each node's boot
    /// time: it starts every node so it is ready exactly when needed, so it
    /// never makes anyone wait.
    Oracle,
}

impl Policy {
    pub const ALL: [Policy; 4] = [
        Policy::StaticPeak,
        Policy::Reactive,
        Policy::Forecast,
        Policy::Oracle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::StaticPeak => "static-peak",
            Policy::Reactive => "reactive",
            Policy::Forecast => "forecast",
            Policy::Oracle => "oracle",
        }
    }
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub slots_per_node: usize,
    /// Price of one node-hour (only to print money; decisions use hours).
    pub node_price: f64,
    /// Boot time is log-normal: median and log-sd, in minutes (1–2 min typical, p95 ≈ 5).
    pub boot_median: f64,
    pub boot_sigma: f64,
    /// Game warm-up added to the planner's lead time.
    pub warmup_minutes: i64,
    /// A player waiting longer than this gives up: a refused join.
    pub max_wait: i64,
    pub max_nodes: usize,
    /// Days of the trace used only as forecast history.
    pub warmup_days: usize,
    /// Hours between forecast refits.
    pub refit_hours: usize,
    pub scale_in_window: i64,
    pub reactive_out: f64,
    pub reactive_in: f64,
    pub reactive_in_minutes: i64,
    /// The forecast policy holds capacity for an hour only when the
    /// probability that anyone comes reaches this: a warm node for an
    /// empty hour costs a node-hour, a cold start costs a player a boot.
    /// Lower buys fewer waits for more idle nodes (0 holds the quantile
    /// whatever the odds, above 1 never holds ahead of demand).
    pub p_hold: f64,
    pub seed: u64,
    pub chain: ChainConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            slots_per_node: 8,
            node_price: 1.0,
            boot_median: 1.5,
            boot_sigma: 0.73,
            warmup_minutes: 1,
            max_wait: 10,
            max_nodes: 1000,
            warmup_days: 14,
            refit_hours: 6,
            scale_in_window: 5,
            reactive_out: 0.85,
            reactive_in: 0.30,
            reactive_in_minutes: 20,
            p_hold: 0.5,
            seed: 42,
            chain: ChainConfig::default(),
        }
    }
}

impl SimConfig {
    /// Boot p95 (log-normal) + warm-up: how far ahead the planner must act.
    pub fn lead_minutes(&self) -> i64 {
        (self.boot_median * (1.645 * self.boot_sigma).exp()).ceil() as i64 + self.warmup_minutes
    }
}

/// Small deterministic PRNG (splitmix64): runs must be reproducible in CI.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A trace ready for replay: sessions (one server slot each) in minutes
/// from the trace start, plus their concurrency.
#[derive(Debug, Clone)]
pub struct Trace {
    pub name: String,
    pub start_minute: i64,
    pub sessions: Vec<Session>,
    pub concurrency: Vec<f64>,
}

impl Trace {
    /// From a real session log (e.g. PLAICraft).
    pub fn from_sessions(name: &str, sessions: &[Session]) -> Trace {
        let conc = crate::ingest::session_concurrency(name, sessions);
        let sessions = sessions
            .iter()
            .map(|s| Session {
                start: s.start - conc.start_minute,
                end: s.end - conc.start_minute,
            })
            .collect();
        Trace {
            name: name.to_string(),
            start_minute: conc.start_minute,
            sessions,
            concurrency: conc.values,
        }
    }

    /// From a concurrency curve (units = server slots): sessions are born
    /// and end so the curve is followed, with exponential session lengths.
    pub fn synthesize(curve: &MinuteTrace, mean_session: f64, seed: u64) -> Trace {
        let mut rng = Rng::new(seed);
        let p_end = 1.0 / mean_session.max(1.0);
        let mut active: Vec<usize> = Vec::new();
        let mut sessions: Vec<Session> = Vec::new();
        for (m, target) in curve.values.iter().enumerate() {
            let m = m as i64;
            let target = target.max(0.0).round() as usize;
            let mut i = 0;
            while i < active.len() {
                if rng.uniform() < p_end {
                    sessions[active[i]].end = m;
                    active.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            while active.len() > target {
                let k = (rng.next_u64() % active.len() as u64) as usize;
                sessions[active[k]].end = m;
                active.swap_remove(k);
            }
            while active.len() < target {
                active.push(sessions.len());
                sessions.push(Session {
                    start: m,
                    end: i64::MAX,
                });
            }
        }
        let len = curve.values.len() as i64;
        for s in &mut sessions {
            s.end = s.end.min(len).max(s.start + 1);
        }
        let mut concurrency = vec![0.0; curve.values.len()];
        for s in &sessions {
            for c in &mut concurrency[s.start as usize..s.end as usize] {
                *c += 1.0;
            }
        }
        Trace {
            name: curve.name.clone(),
            start_minute: curve.start_minute,
            sessions,
            concurrency,
        }
    }
}

/// Outcome of one policy.
#[derive(Debug, Clone)]
pub struct PolicyResult {
    pub policy: Policy,
    pub node_hours: i64,
    pub cost: f64,
    /// Joins that found no free slot.
    pub cold_starts: usize,
    pub wait_player_minutes: f64,
    pub wait_p95: f64,
    pub refused: usize,
    /// Used slot-minutes ÷ billed-node slot-minutes.
    pub utilization: f64,
    /// Per minute: slots of ready nodes (for the chart).
    pub capacity: Vec<f64>,
    /// Nodes created (by the policy or for a waiting player) and deleted.
    pub created: usize,
    pub deleted: usize,
}

#[derive(Debug, Clone)]
struct Node {
    created: i64,
    ready_at: i64,
    used: usize,
    deleted: Option<i64>,
    /// Takes no new servers; deleted once empty (reactive scale-in).
    draining: bool,
}

impl Node {
    fn new(created: i64, ready_at: i64) -> Node {
        Node {
            created,
            ready_at,
            used: 0,
            deleted: None,
            draining: false,
        }
    }
}

/// Replays `trace` from `warmup_days` on through every policy.
pub fn simulate(trace: &Trace, cal: &Calendar, cfg: &SimConfig) -> Result<Vec<PolicyResult>> {
    let m0 = (cfg.warmup_days * 1440) as i64;
    let m1 = trace.concurrency.len() as i64;
    if m1 <= m0 + 1440 {
        return Err(Error::NotEnoughData(format!(
            "trace {} has {} minutes, need more than {} days",
            trace.name,
            m1,
            cfg.warmup_days + 1
        )));
    }
    if cfg.slots_per_node == 0 {
        return Err(Error::Config("a node must hold at least one server".into()));
    }
    Policy::ALL
        .iter()
        .map(|p| run_policy(*p, trace, cal, cfg, m0, m1))
        .collect()
}

/// Forward-looking window maximum: out[i] = max(v[i..=i+w]).
fn forward_max(v: &[f64], w: usize) -> Vec<f64> {
    let mut out = vec![0.0; v.len()];
    let mut dq: VecDeque<usize> = VecDeque::new();
    for i in (0..v.len()).rev() {
        while dq.back().is_some_and(|&j| v[j] <= v[i]) {
            dq.pop_back();
        }
        dq.push_back(i);
        while dq.front().is_some_and(|&j| j > i + w) {
            dq.pop_front();
        }
        out[i] = dq.front().map(|&j| v[j]).unwrap_or(0.0);
    }
    out
}

/// The forecast policy's view of the future: hourly upper quantiles of the
/// hourly peak, refitted every `refit_hours`.
struct ForecastView<'a> {
    fc: Forecaster<'a>,
    hourly: &'a [f64],
    start_hour: i64,
    first_hour: usize,
    upper: Vec<f64>,
    occupancy: Occupancy,
    /// First hour of `p_any`, refreshed every hour from the latest history.
    p_hour: usize,
    p_any: Vec<f64>,
    p_hold: f64,
}

impl ForecastView<'_> {
    fn refit(&mut self, hour: usize) {
        // on failure keep the previous forecast; the guard covers the gap
        if let Ok(f) = self.fc.forecast_at(hour) {
            tracing::debug!(hour, method = f.method.name(), "forecast policy refit");
            self.first_hour = hour;
            self.upper = f.upper;
            self.occupancy = f.occupancy;
        }
    }

    /// Whether anyone comes: the occupancy model applied to the history up
    /// to `hour` (someone there in the last hour matters most).
    fn refresh_p(&mut self, hour: usize) {
        let hist = &self.hourly[..hour.min(self.hourly.len())];
        self.p_hour = hour;
        self.p_any = self
            .occupancy
            .predict(hist, self.start_hour, self.upper.len().max(1));
    }

    /// Servers to hold for the hour containing `minute`: none unless the
    /// probability that anyone comes reaches `p_hold` (a warm node for an
    /// hour that stays empty is paid in full), else the quantile rounded
    /// to whole servers, at least one.
    fn at(&self, minute: i64) -> f64 {
        let h = (minute / 60) as usize;
        let (Some(i), Some(j)) = (h.checked_sub(self.first_hour), h.checked_sub(self.p_hour))
        else {
            return 0.0;
        };
        match (self.upper.get(i), self.p_any.get(j)) {
            (Some(u), Some(p)) if *p >= self.p_hold => u.round().max(1.0),
            _ => 0.0,
        }
    }
}

fn run_policy(
    policy: Policy,
    trace: &Trace,
    cal: &Calendar,
    cfg: &SimConfig,
    m0: i64,
    m1: i64,
) -> Result<PolicyResult> {
    let slots = cfg.slots_per_node;
    let lead = cfg.lead_minutes();
    let pcfg = PlannerConfig {
        slots_per_node: slots,
        lead_minutes: lead,
        scale_in_window: cfg.scale_in_window,
        max_nodes: cfg.max_nodes,
    };
    let mut rng = Rng::new(cfg.seed ^ 0xA5A5);
    let mut boot = move || -> i64 {
        (cfg.boot_median * (cfg.boot_sigma * rng.normal()).exp())
            .ceil()
            .max(1.0) as i64
    };
    let conc = &trace.concurrency;
    // the oracle needs only the next lead minutes: an empty node is given
    // back at the end of its paid hour unless they need it, because one
    // started just in time for the next arrival bills from later on
    let soon_max = if policy == Policy::Oracle {
        forward_max(conc, lead as usize)
    } else {
        Vec::new()
    };
    let hourly = MinuteTrace {
        name: trace.name.clone(),
        start_minute: 0,
        values: conc.clone(),
    }
    .hourly_max();
    let mut view = ForecastView {
        fc: Forecaster::new(&hourly.values, trace.start_minute / 60, cal, &cfg.chain),
        hourly: &hourly.values,
        start_hour: trace.start_minute / 60,
        first_hour: 0,
        upper: Vec::new(),
        occupancy: Occupancy::Constant(1.0),
        p_hour: 0,
        p_any: Vec::new(),
        p_hold: cfg.p_hold,
    };

    let mut nodes: Vec<Node> = Vec::new();
    let mut session_node: Vec<Option<usize>> = vec![None; trace.sessions.len()];
    let mut ends: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    let place = |nodes: &mut Vec<Node>, now: i64| -> Option<usize> {
        // best fit: the fullest ready node with room, so others can empty out
        let i = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                n.deleted.is_none() && !n.draining && n.ready_at <= now && n.used < slots
            })
            .max_by_key(|(i, n)| (n.used, Reverse(*i)))
            .map(|(i, _)| i)?;
        nodes[i].used += 1;
        Some(i)
    };

    // start with what is running at m0; static-peak holds the peak of the
    // history only, the oracle what the first lead minutes will need
    let past_peak = conc[..m0 as usize].iter().copied().fold(0.0, f64::max);
    let initial = match policy {
        Policy::StaticPeak => planner::nodes_for(past_peak, slots),
        Policy::Oracle => planner::nodes_for(soon_max[m0 as usize], slots),
        _ => planner::nodes_for(conc[m0 as usize], slots),
    };
    for _ in 0..initial {
        nodes.push(Node::new(m0, m0));
    }
    let mut next = 0usize;
    while next < trace.sessions.len() && trace.sessions[next].start < m0 {
        let s = trace.sessions[next];
        if s.end > m0 {
            if let Some(i) = place(&mut nodes, m0) {
                session_node[next] = Some(i);
                ends.push(Reverse((s.end, next)));
            }
        }
        next += 1;
    }

    let mut waiting: VecDeque<(usize, i64)> = VecDeque::new();
    let mut waits: Vec<f64> = Vec::new();
    let mut cold_starts = 0usize;
    let mut refused = 0usize;
    let mut low_since: Option<i64> = None;
    let mut recent_joins: VecDeque<i64> = VecDeque::new();
    let mut used_minutes = 0.0f64;
    let mut slot_minutes = 0.0f64;
    let mut capacity = Vec::with_capacity((m1 - m0) as usize);

    for m in m0..m1 {
        while let Some(Reverse((e, k))) = ends.peek().copied() {
            if e > m {
                break;
            }
            ends.pop();
            if let Some(i) = session_node[k] {
                nodes[i].used = nodes[i].used.saturating_sub(1);
            }
        }
        // waiting players go first, in arrival order
        while let Some(&(k, arrived)) = waiting.front() {
            if m - arrived > cfg.max_wait {
                waiting.pop_front();
                refused += 1;
                continue;
            }
            if trace.sessions[k].end <= m {
                waiting.pop_front();
                waits.push((m - arrived) as f64);
                continue;
            }
            match place(&mut nodes, m) {
                Some(i) => {
                    waiting.pop_front();
                    waits.push((m - arrived) as f64);
                    session_node[k] = Some(i);
                    ends.push(Reverse((trace.sessions[k].end, k)));
                }
                None => break,
            }
        }
        while next < trace.sessions.len() && trace.sessions[next].start <= m {
            let k = next;
            next += 1;
            recent_joins.push_back(m);
            if !waiting.is_empty() {
                waiting.push_back((k, m));
                cold_starts += 1;
                continue;
            }
            match place(&mut nodes, m) {
                Some(i) => {
                    session_node[k] = Some(i);
                    ends.push(Reverse((trace.sessions[k].end, k)));
                }
                None => {
                    waiting.push_back((k, m));
                    cold_starts += 1;
                }
            }
        }
        while recent_joins.front().is_some_and(|&t| t < m - 30) {
            recent_joins.pop_front();
        }
        // the platform boots a node for a player who found none (any policy)
        let alive: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].deleted.is_none())
            .collect();
        let booting_free: usize = alive
            .iter()
            .filter(|&&i| nodes[i].ready_at > m)
            .map(|&i| slots - nodes[i].used)
            .sum();
        if waiting.len() > booting_free && alive.len() < cfg.max_nodes {
            let extra = planner::nodes_for((waiting.len() - booting_free) as f64, slots)
                .min(cfg.max_nodes - alive.len());
            for _ in 0..extra {
                let b = boot();
                nodes.push(Node::new(m, m + b));
            }
        }

        let alive: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].deleted.is_none())
            .collect();
        let used: usize = alive.iter().map(|&i| nodes[i].used).sum();
        let actions = match policy {
            Policy::StaticPeak => Vec::new(),
            Policy::Reactive => {
                reactive_step(&mut nodes, &alive, waiting.len(), m, &mut low_since, cfg)
            }
            Policy::Forecast | Policy::Oracle => {
                let (soon, hour, joins) = if policy == Policy::Oracle {
                    let i = m as usize;
                    (soon_max[i], soon_max[i], 0.0)
                } else {
                    let due = (m / 60) as usize % cfg.refit_hours.max(1) == 0;
                    if m % 60 == 0 && (due || view.upper.is_empty()) {
                        view.refit((m / 60) as usize);
                    }
                    if m % 60 == 0 {
                        view.refresh_p((m / 60) as usize);
                    }
                    let soon = view.at(m).max(view.at(m + lead));
                    let hour = (0..=((60 + lead) / 60 + 1))
                        .map(|k| view.at(m + 60 * k))
                        .fold(soon, f64::max);
                    // joins over the last 30 min, stretched to the lead time
                    let rate = recent_joins.len() as f64 / 30.0;
                    (soon, hour, rate * lead as f64)
                };
                let views: Vec<NodeView> = alive
                    .iter()
                    .map(|&i| NodeView {
                        id: i,
                        created: nodes[i].created,
                        ready: nodes[i].ready_at <= m,
                        used: nodes[i].used,
                    })
                    .collect();
                planner::decide(
                    &Situation {
                        now: m,
                        nodes: &views,
                        need_soon: soon,
                        need_hour: hour,
                        joins_in_lead: joins,
                    },
                    &pcfg,
                )
            }
        };
        for a in actions {
            match a {
                Action::Create(k) => {
                    for _ in 0..k {
                        let b = boot();
                        if policy == Policy::Oracle {
                            // clairvoyant: it knew this boot would take b
                            // minutes and started the node b minutes before
                            // it is needed (billing from then on)
                            nodes.push(Node::new(m + lead - b, m + lead));
                        } else {
                            nodes.push(Node::new(m, m + b));
                        }
                    }
                }
                Action::Delete(i) => {
                    // the oracle never gives up a node the next lead minutes
                    // need: nodes booting now are not ready before then
                    let ready = nodes
                        .iter()
                        .filter(|n| n.deleted.is_none() && n.ready_at <= m)
                        .count();
                    let keep_ready = policy == Policy::Oracle
                        && ready <= planner::nodes_for(soon_max[m as usize], slots);
                    if let Some(n) = nodes.get_mut(i) {
                        if n.deleted.is_none() && n.used == 0 && n.ready_at <= m && !keep_ready {
                            n.deleted = Some(m);
                        }
                    }
                }
            }
        }
        // a drained node goes as soon as its last player has left
        for n in nodes.iter_mut() {
            if n.draining && n.deleted.is_none() && n.used == 0 {
                n.deleted = Some(m);
            }
        }
        let alive_now = nodes.iter().filter(|n| n.deleted.is_none());
        let (mut ready_slots, mut all_slots) = (0usize, 0usize);
        for n in alive_now.filter(|n| n.created <= m) {
            all_slots += slots;
            if n.ready_at <= m {
                ready_slots += slots;
            }
        }
        used_minutes += used as f64;
        slot_minutes += all_slots as f64;
        capacity.push(ready_slots as f64);
    }
    refused += waiting.len();
    let node_hours: i64 = nodes
        .iter()
        .map(|n| planner::billed_hours(n.created, n.deleted.unwrap_or(m1)))
        .sum();
    let wait_p95 = if waits.is_empty() {
        0.0
    } else {
        metrics::quantile(&waits, 0.95)
    };
    Ok(PolicyResult {
        policy,
        node_hours,
        cost: node_hours as f64 * cfg.node_price,
        cold_starts,
        wait_player_minutes: waits.iter().sum::<f64>() + (refused as i64 * cfg.max_wait) as f64,
        wait_p95,
        refused,
        utilization: if slot_minutes > 0.0 {
            used_minutes / slot_minutes
        } else {
            0.0
        },
        capacity,
        created: nodes.len() - initial,
        deleted: nodes.iter().filter(|n| n.deleted.is_some()).count(),
    })
}

/// One minute of the seed's reactive rule. Utilisation is used ÷ total
/// slots of the nodes taking servers (booting ones included, so one slow
/// boot does not trigger a second node). Above `reactive_out`: cancel a
/// drain if one is under way, else create one node unless one is booting.
/// Below `reactive_in` for `reactive_in_minutes`: drain the least used
/// ready node whose servers fit on the others, and start the window again.
fn reactive_step(
    nodes: &mut [Node],
    alive: &[usize],
    waiting: usize,
    m: i64,
    low_since: &mut Option<i64>,
    cfg: &SimConfig,
) -> Vec<Action> {
    let slots = cfg.slots_per_node;
    let active: Vec<usize> = alive
        .iter()
        .copied()
        .filter(|&i| !nodes[i].draining)
        .collect();
    let cap = active.len() * slots;
    let used: usize = active.iter().map(|&i| nodes[i].used).sum();
    // no nodes and nobody waiting is 0 % used, not 100 %
    let util = if cap > 0 {
        (used + waiting) as f64 / cap as f64
    } else if waiting == 0 {
        0.0
    } else {
        1.0
    };
    if util > cfg.reactive_out {
        *low_since = None;
        if let Some(&i) = alive.iter().find(|&&i| nodes[i].draining) {
            nodes[i].draining = false;
            return Vec::new();
        }
        if active.iter().all(|&i| nodes[i].ready_at <= m) {
            return vec![Action::Create(1)];
        }
        return Vec::new();
    }
    if util >= cfg.reactive_in {
        *low_since = None;
        return Vec::new();
    }
    let since = *low_since.get_or_insert(m);
    if m - since < cfg.reactive_in_minutes {
        return Vec::new();
    }
    // the others must hold what is running, or the drain would only
    // trigger the next scale-out
    if (active.len().saturating_sub(1)) * slots < used + waiting {
        return Vec::new();
    }
    let victim = active
        .iter()
        .copied()
        .filter(|&i| nodes[i].ready_at <= m)
        .min_by_key(|&i| (nodes[i].used, std::cmp::Reverse(i)));
    if let Some(i) = victim {
        nodes[i].draining = true;
        *low_since = Some(m);
    }
    Vec::new()
}

/// The table printed by `warden forecast simulate`.
pub fn render(trace: &Trace, results: &[PolicyResult], cfg: &SimConfig) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let oracle = results.iter().find(|r| r.policy == Policy::Oracle);
    let reactive = results.iter().find(|r| r.policy == Policy::Reactive);
    let _ = writeln!(
        out,
        "trace {} — {} sessions, {} slots/node, lead {} min, replay after {} warm-up days",
        trace.name,
        trace.sessions.len(),
        cfg.slots_per_node,
        cfg.lead_minutes(),
        cfg.warmup_days
    );
    let _ = writeln!(
        out,
        "{:<12} {:>9} {:>10} {:>8} {:>7} {:>10} {:>8} {:>8} {:>6} {:>9} {:>7} {:>7}",
        "policy",
        "node-h",
        "cost",
        "÷oracle",
        "colds",
        "wait p-min",
        "wait p95",
        "refused",
        "util%",
        "wait÷reac",
        "created",
        "deleted"
    );
    for r in results {
        let vs_oracle = oracle
            .map(|o| r.cost / o.cost.max(1e-9))
            .unwrap_or(f64::NAN);
        // undefined when the reactive policy never made anyone wait
        let vs_reactive = match reactive {
            Some(x) if x.wait_player_minutes > 0.0 => {
                format!("{:.3}", r.wait_player_minutes / x.wait_player_minutes)
            }
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>10.2} {:>8.3} {:>7} {:>10.1} {:>8.1} {:>8} {:>6.1} {:>9} {:>7} {:>7}",
            r.policy.name(),
            r.node_hours,
            r.cost,
            vs_oracle,
            r.cold_starts,
            r.wait_player_minutes,
            r.wait_p95,
            r.refused,
            100.0 * r.utilization,
            vs_reactive,
            r.created,
            r.deleted
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_window_max() {
        let v = [1.0, 3.0, 2.0, 0.0, 5.0];
        assert_eq!(forward_max(&v, 1), vec![3.0, 3.0, 2.0, 5.0, 5.0]);
        assert_eq!(forward_max(&v, 0), v.to_vec());
    }

    #[test]
    fn boot_time_distribution() {
        let cfg = SimConfig::default();
        let mut rng = Rng::new(1);
        let mut b: Vec<f64> = (0..20_000)
            .map(|_| cfg.boot_median * (cfg.boot_sigma * rng.normal()).exp())
            .collect();
        b.sort_by(f64::total_cmp);
        let p50 = metrics::quantile(&b, 0.5);
        let p95 = metrics::quantile(&b, 0.95);
        assert!((1.0..2.0).contains(&p50), "median {p50}");
        assert!((4.5..5.5).contains(&p95), "p95 {p95}");
        assert_eq!(cfg.lead_minutes(), 6);
    }

    #[test]
    fn synthesized_sessions_follow_the_curve() {
        let curve = MinuteTrace {
            name: "c".into(),
            start_minute: 0,
            values: (0..600)
                .map(|i| 10.0 + 5.0 * ((i as f64) / 60.0).sin())
                .collect(),
        };
        let t = Trace::synthesize(&curve, 30.0, 3);
        for (a, b) in t.concurrency.iter().zip(&curve.values) {
            assert!((a - b.round()).abs() < 1e-9);
        }
    }

    /// Every day from 10:00, `count` sessions of `len` minutes, one every
    /// `step` minutes.
    fn daily_waves(days: i64, count: i64, step: i64, len: i64) -> Vec<Session> {
        (0..days)
            .flat_map(|d| (0..count).map(move |k| d * 1440 + 600 + k * step))
            .map(|start| Session {
                start,
                end: start + len,
            })
            .collect()
    }

    #[test]
    fn policies_on_a_small_trace() {
        // two weeks of daily waves of sessions, then a replayed third
        let trace = Trace::from_sessions("waves", &daily_waves(17, 30, 13, 90));
        let cfg = SimConfig {
            slots_per_node: 4,
            warmup_days: 14,
            ..Default::default()
        };
        let res = simulate(&trace, &Calendar::german(), &cfg).unwrap();
        let get = |p| res.iter().find(|r| r.policy == p).unwrap();
        let (st, re, fo, or) = (
            get(Policy::StaticPeak),
            get(Policy::Reactive),
            get(Policy::Forecast),
            get(Policy::Oracle),
        );
        assert_eq!(st.cold_starts, 0);
        assert!(or.node_hours <= st.node_hours);
        // the oracle knows boot times: nobody ever waits for it
        assert_eq!((or.cold_starts, or.refused), (0, 0));
        assert_eq!(or.wait_player_minutes, 0.0);
        assert!(re.cold_starts > 0);
        assert!(fo.wait_player_minutes < re.wait_player_minutes);
        assert!(fo.utilization > 0.0 && fo.utilization <= 1.0);
        assert!(render(&trace, &res, &cfg).contains("oracle"));
    }

    /// Two days of history with small waves, then a day with a burst of 40
    /// sessions for an hour and a single long session after it.
    fn burst_trace() -> Trace {
        let mut sessions = daily_waves(2, 4, 10, 60);
        let t0 = 2 * 1440 + 300;
        for k in 0..40i64 {
            sessions.push(Session {
                start: t0 + k,
                end: t0 + 60 + k,
            });
        }
        sessions.push(Session {
            start: t0,
            end: 3 * 1440 + 600,
        });
        Trace::from_sessions("burst", &sessions)
    }

    #[test]
    fn reactive_scales_in_after_the_burst_and_static_sizes_from_the_past() {
        let trace = burst_trace();
        let cfg = SimConfig {
            slots_per_node: 4,
            warmup_days: 2,
            ..Default::default()
        };
        let res = simulate(&trace, &Calendar::german(), &cfg).unwrap();
        let get = |p| res.iter().find(|r| r.policy == p).unwrap();
        let re = get(Policy::Reactive);
        // out to about 13 nodes for the burst (ends at minute 399), then back
        // in one node per 20 minutes of low utilisation until one node holds
        // the long session
        assert!(re.created >= 8, "created {}", re.created);
        assert!(re.deleted >= 8, "deleted {}", re.deleted);
        assert_eq!(re.capacity[700], 4.0, "one node left long after the burst");
        for w in re.capacity[400..700].windows(20) {
            assert!(w[0] - w[19] <= 4.0, "more than one node in 20 min: {w:?}");
        }
        // static-peak is sized on the history's peak of 4 servers: one node,
        // so the burst it never saw makes players wait
        let st = get(Policy::StaticPeak);
        assert!(st.cold_starts > 0);
        assert_eq!(st.capacity[0], 4.0);
        let or = get(Policy::Oracle);
        assert_eq!(or.cold_starts, 0);
        assert!(or.node_hours < st.node_hours + re.node_hours);
    }

    /// Four weeks of a scale-to-zero server: most evenings someone plays
    /// for an hour or so between 19:00 and 23:00, now and then someone
    /// drops in at another hour; otherwise nobody.
    fn sparse_trace() -> Trace {
        let mut rng = Rng::new(9);
        let mut sessions = Vec::new();
        for d in 0..28i64 {
            for hour in 0..24i64 {
                let p = if (19..23).contains(&hour) { 0.6 } else { 0.03 };
                if rng.uniform() < p {
                    let start = d * 1440 + hour * 60 + (rng.uniform() * 60.0) as i64;
                    let len = 20 + (rng.uniform() * 70.0) as i64;
                    sessions.push(Session {
                        start,
                        end: start + len,
                    });
                }
            }
        }
        Trace::from_sessions("sparse", &sessions)
    }

    #[test]
    fn sparse_demand_holds_nodes_by_the_odds_that_anyone_comes() {
        let trace = sparse_trace();
        let run = |p_hold: f64| {
            let cfg = SimConfig {
                warmup_days: 21,
                refit_hours: 24,
                p_hold,
                chain: ChainConfig {
                    candidates: vec![
                        crate::chain::Method::SeasonalNaive168,
                        crate::chain::Method::SeasonalNaive24,
                    ],
                    ..Default::default()
                },
                ..Default::default()
            };
            simulate(&trace, &Calendar::german(), &cfg).unwrap()
        };
        let get = |res: &[PolicyResult], p| res.iter().find(|r| r.policy == p).unwrap().clone();
        // p_hold 0: the quantile alone, which holds a node nearly always
        let always = get(&run(0.0), Policy::Forecast);
        let res = run(0.5);
        let (fo, re, or) = (
            get(&res, Policy::Forecast),
            get(&res, Policy::Reactive),
            get(&res, Policy::Oracle),
        );
        assert!(
            (fo.node_hours as f64) < 0.8 * always.node_hours as f64,
            "by the odds {} vs by the quantile {}",
            fo.node_hours,
            always.node_hours
        );
        assert!(fo.wait_player_minutes < re.wait_player_minutes);
        assert!(or.node_hours <= fo.node_hours && or.node_hours <= re.node_hours);
        assert_eq!(or.cold_starts, 0);
        // never holding ahead of demand: cheapest of the three, most waits
        let never = get(&run(2.0), Policy::Forecast);
        assert!(never.node_hours <= fo.node_hours);
        assert!(never.wait_player_minutes > fo.wait_player_minutes);
    }

    #[test]
    fn oracle_never_makes_anyone_wait_with_slow_boots() {
        // boots of 5 min median with a heavy tail, far beyond the lead time
        let trace = burst_trace();
        for seed in 0..5 {
            let cfg = SimConfig {
                slots_per_node: 2,
                warmup_days: 2,
                boot_median: 5.0,
                boot_sigma: 1.2,
                seed,
                ..Default::default()
            };
            let res = simulate(&trace, &Calendar::german(), &cfg).unwrap();
            let or = res.iter().find(|r| r.policy == Policy::Oracle).unwrap();
            assert_eq!(or.cold_starts, 0, "seed {seed}");
            let re = res.iter().find(|r| r.policy == Policy::Reactive).unwrap();
            assert!(re.cold_starts > 0, "seed {seed}");
        }
    }
}
