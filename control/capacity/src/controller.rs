//! The capacity controller's loop. Every appliance with `[capacity]` runs it; only the
//! leader decides. Each `interval` the leader reads the fleet (node records: memory, in
//! use, waiting) and the cloud (the pool's servers), records the hour's demand, forecasts
//! the next hours at the planning quantile (refitted every hour on the store's history),
//! learns the lead time from its own nodes' boots, asks [`crate::plan::decide`], and
//! carries the decisions out, checking its lease before each purchase or deletion. It
//! also deletes what the cloud bills for and the fleet does not know: servers of the pool
//! that never joined, and nodes that died.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};
use warden_forecast::calendar::Calendar;
use warden_forecast::chain::{ChainConfig, Forecaster};
use warden_store::{now_unix_ms, NodeRecord, NodeState, StateStore};

use crate::cloud::{Cloud, CloudServer};
use crate::history::History;
use crate::leader::{Leadership, RENEW};
use crate::metrics::Metrics;
use crate::plan::{decide, CloudNode, Decision, Inputs, NodeView};
use crate::settings::CapacitySettings;
use crate::view::{CapacityView, DecisionRecord, ForecastHour};
use crate::CapacityError;

/// The store documents: the history and the last view (any appliance's API serves it).
const DOC_KIND: &str = "capacity";
const HISTORY_DOC: &str = "history";
pub(crate) const VIEW_DOC: &str = "view";
/// Decisions kept for the view.
const KEEP_DECISIONS: usize = 50;
/// The forecast is refitted this often (hours)...
const REFIT_HOURS: usize = 24;
/// ...and as soon as this many complete hours in a row were above its planning quantile.
const REGIME_HOURS: usize = 3;
/// Hours of history needed before the forecast is trusted (two weeks: the weekly season
/// and a validation week).
const MIN_HISTORY_HOURS: usize = 14 * 24;

/// Tells the fleet about a decision (`node`, `kind: reason`): the API's live feed and the
/// webhooks.
pub type Announce = Box<dyn Fn(Option<&str>, &str) + Send + Sync>;

pub struct Controller {
    s: CapacitySettings,
    store: Arc<dyn StateStore>,
    cloud: Cloud,
    template: String,
    me: String,
    metrics: Option<Metrics>,
    announce: Announce,
    history: Option<History>,
    /// The forecast from the start of the hour under way: (hour, upper GB per hour ahead,
    /// point GB, method).
    forecast: Option<(i64, Vec<f64>, Vec<f64>, String)>,
    low_since: Option<u64>,
    /// (ms, GB in use) over the last lead time, for the reactive guard's growth.
    recent: VecDeque<(u64, f64)>,
    /// Billed hours already counted per cloud server (the cost counter).
    billed: HashMap<u64, u64>,
    decisions: VecDeque<DecisionRecord>,
    seq: u64,
}

impl Controller {
    pub fn new(
        s: CapacitySettings,
        store: Arc<dyn StateStore>,
        me: &str,
        metrics: Option<Metrics>,
        announce: Announce,
    ) -> Result<Self, CapacityError> {
        s.check()?;
        let template = std::fs::read_to_string(&s.template.user_data).map_err(|e| {
            CapacityError::Config(format!(
                "capacity.template.user_data: cannot read {}: {e}",
                s.template.user_data.display()
            ))
        })?;
        let cloud = Cloud::new(&s, template.clone())?;
        Ok(Controller {
            s,
            store,
            cloud,
            template,
            me: me.to_string(),
            metrics,
            announce,
            history: None,
            forecast: None,
            low_since: None,
            recent: VecDeque::new(),
            billed: HashMap::new(),
            decisions: VecDeque::new(),
            seq: 0,
        })
    }

    /// Runs until the task is dropped.
    pub async fn run(mut self) {
        let mut lead = Leadership::new(self.store.clone(), &self.me);
        let mut last: Option<Instant> = None;
        loop {
            let leading = lead.hold().await;
            if let Some(m) = &self.metrics {
                m.leader.set(i64::from(leading));
            }
            if leading {
                if last.is_none_or(|t| t.elapsed() >= self.s.interval) {
                    last = Some(Instant::now());
                    if let Err(e) = self.tick(&mut lead).await {
                        warn!(error = %e, "capacity: this round decided nothing");
                        self.record(None, &format!("hold: {e}")).await;
                    }
                }
            } else {
                // Not leading: plan afresh from the store when leading again.
                self.history = None;
                last = None;
            }
            tokio::time::sleep(RENEW.min(self.s.interval)).await;
        }
    }

    fn hour_ms(&self) -> u64 {
        u64::try_from(self.s.hour.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    async fn tick(&mut self, lead: &mut Leadership) -> Result<(), CapacityError> {
        let now = now_unix_ms();
        let hour_ms = self.hour_ms();
        let hour = (now / hour_ms) as i64;
        let nodes = self.store.nodes().await?;
        let cloud = self.cloud.list().await?;
        let (node_gb, node_price) = self.cloud.next_node().await?;

        // Demand: in use and waiting on every node.
        let used: f64 = nodes
            .iter()
            .filter(|n| n.live(now))
            .map(|n| n.allocated_gb)
            .sum();
        let waiting: f64 = nodes
            .iter()
            .filter(|n| n.live(now))
            .map(|n| n.waiting_gb)
            .sum();
        let mut history = match self.history.take() {
            Some(h) => h,
            None => self.load_history(hour).await?,
        };
        history.observe(hour, used + waiting);
        for c in &cloud {
            if let Some(n) = nodes.iter().find(|n| n.id == c.name) {
                if c.created_ms > 0 && n.registered_unix_ms >= c.created_ms {
                    history.timed_boot(&c.name, n.registered_unix_ms - c.created_ms);
                }
            }
        }
        let learned = history.learned_lead_ms();
        let lead_ms = learned.unwrap_or(u64::try_from(self.s.lead_time.as_millis()).unwrap_or(0));
        // Look ahead twice the slowest boot and one round: a node bought now is ready in
        // time even if this boot is slower than the last ones.
        let ahead_ms = 2 * lead_ms + u64::try_from(self.s.interval.as_millis()).unwrap_or(0);
        self.refresh_forecast(&history, hour).await;
        // The planning quantile's peak from now until `ms` ahead (upper[0] is the hour
        // under way: origin is its start).
        let peak_within = |ms: u64| {
            self.forecast.as_ref().map(|(origin, upper, _, _)| {
                let hours_ahead = ((now % hour_ms + ms) / hour_ms) as usize;
                let skip = usize::try_from(hour - origin).unwrap_or(0);
                upper
                    .iter()
                    .skip(skip)
                    .take(hours_ahead + 1)
                    .copied()
                    .fold(0.0, f64::max)
            })
        };
        let forecast_gb = peak_within(ahead_ms);
        // A node drained now comes back no sooner than a new one would: keep it while the
        // next hour and a lead time need it.
        let keep_gb = peak_within(hour_ms + ahead_ms);
        let growth_gb = {
            self.recent.push_back((now, used));
            while self
                .recent
                .front()
                .is_some_and(|(t, _)| now - t > lead_ms.max(1))
            {
                self.recent.pop_front();
            }
            self.recent
                .front()
                .map(|(_, g)| (used - g).max(0.0))
                .unwrap_or(0.0)
        };

        let views = node_views(&nodes, &cloud, now);
        let capacity: f64 = views.iter().filter(|n| n.ready).map(|n| n.memory_gb).sum();
        let low = capacity > 0.0 && used / capacity < self.s.scale_in_below;
        self.low_since = if low {
            self.low_since.or(Some(now))
        } else {
            None
        };
        let low_for_long = self.low_since.is_some_and(|t| {
            now - t >= u64::try_from(self.s.scale_in_after.as_millis()).unwrap_or(0)
        });
        let pending: Vec<&CloudServer> = cloud
            .iter()
            .filter(|c| !nodes.iter().any(|n| n.id == c.name))
            .filter(|c| now.saturating_sub(c.created_ms) < self.grace_ms())
            .collect();
        let spent = cost_today(&cloud, now, hour_ms);
        let budget_nodes = self.s.budget_per_day.map(|b| {
            if node_price <= 0.0 {
                usize::MAX
            } else {
                ((b - spent) / node_price).floor().max(0.0) as usize
            }
        });
        let inputs = Inputs {
            now_ms: now,
            hour_ms,
            nodes: views.clone(),
            pending_gb: pending
                .iter()
                .map(|c| {
                    if c.memory_gb > 0.0 {
                        c.memory_gb
                    } else {
                        node_gb
                    }
                })
                .collect(),
            forecast_gb,
            keep_gb,
            growth_gb,
            lead_ms,
            spares: self.s.spares.at(now),
            node_gb,
            min_nodes: self.s.min_nodes,
            max_nodes: self.s.max_nodes,
            scale_out_above: self.s.scale_out_above,
            low_for_long,
            scale_in_below: self.s.scale_in_below,
            delete_window_ms: u64::try_from(self.s.delete_window.as_millis()).unwrap_or(0),
            budget_nodes,
            quantile: self.s.quantile,
        };
        let decisions = decide(&inputs);
        for d in &decisions {
            self.carry_out(d, lead, &inputs).await;
        }
        self.collect_orphans(&nodes, &cloud, lead, now).await;
        self.count_cost(&cloud, now, hour_ms);

        // Save and show.
        let json =
            serde_json::to_string(&history).map_err(|e| CapacityError::Cloud(e.to_string()))?;
        self.store
            .put_doc(DOC_KIND, HISTORY_DOC, &json, false)
            .await?;
        let view = self.view(&history, &views, &inputs, spent, learned.is_some());
        if let Some(m) = &self.metrics {
            m.show(&view);
        }
        if let Ok(json) = serde_json::to_string(&view) {
            self.store.put_doc(DOC_KIND, VIEW_DOC, &json, false).await?;
        }
        self.history = Some(history);
        Ok(())
    }

    fn grace_ms(&self) -> u64 {
        u64::try_from(self.s.orphan_grace.as_millis()).unwrap_or(u64::MAX)
    }

    async fn load_history(&self, hour: i64) -> Result<History, CapacityError> {
        if let Some(json) = self.store.get_doc(DOC_KIND, HISTORY_DOC).await? {
            match serde_json::from_str::<History>(&json) {
                Ok(h) => return Ok(h),
                Err(e) => {
                    warn!(error = %e, "capacity: the stored history cannot be read; starting afresh")
                }
            }
        }
        match &self.s.seed {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CapacityError::Config(format!(
                        "capacity.seed: cannot read {}: {e}",
                        path.display()
                    ))
                })?;
                History::seeded(&text, hour)
            }
            None => Ok(History::default()),
        }
    }

    /// Refits daily on the complete hours, and sooner when the demand left the forecast
    /// (a regime change: [`REGIME_HOURS`] complete hours in a row above the planning
    /// quantile) or the forecast runs out (CPU work, off the runtime's threads).
    async fn refresh_forecast(&mut self, history: &History, hour: i64) {
        if let Some((origin, upper, _, _)) = &self.forecast {
            let age = usize::try_from(hour - origin).unwrap_or(usize::MAX);
            let done = history.complete();
            let outside = (1..=REGIME_HOURS).all(|k| {
                let (Some(at), Some(h)) = (age.checked_sub(k), done.len().checked_sub(k)) else {
                    return false;
                };
                upper.get(at).zip(done.get(h)).is_some_and(|(u, a)| a > u)
            });
            if age < REFIT_HOURS && age + REFIT_HOURS / 2 < upper.len() && !outside {
                return;
            }
            if outside {
                info!(
                    hour,
                    "capacity: demand left the forecast for {REGIME_HOURS} hours; refitting"
                );
            }
        }
        let values = history.complete().to_vec();
        if values.len() < MIN_HISTORY_HOURS {
            self.forecast = None;
            return;
        }
        let start = hour - values.len() as i64;
        let (quantile, p_hold) = (self.s.quantile, self.s.p_hold);
        let fitted = tokio::task::spawn_blocking(move || {
            let cal = Calendar::german();
            let cfg = ChainConfig {
                quantile,
                ..ChainConfig::default()
            };
            let mut f = Forecaster::new(&values, start, &cal, &cfg);
            f.forecast_at(values.len())
                .map(|f| (f.hold(p_hold), f.point, f.method.name().to_string()))
        })
        .await;
        self.forecast = match fitted {
            Ok(Ok((upper, point, method))) => {
                info!(method, hour, "capacity: forecast refitted");
                Some((hour, upper, point, method))
            }
            Ok(Err(e)) => {
                warn!(error = %e, "capacity: no forecast this hour; planning reactively");
                None
            }
            Err(e) => {
                warn!(error = %e, "capacity: the forecast task failed; planning reactively");
                None
            }
        };
    }

    /// Does `d`, if this appliance still leads.
    async fn carry_out(&mut self, d: &Decision, lead: &mut Leadership, i: &Inputs) {
        if matches!(d, Decision::Hold { .. }) {
            self.record(None, &d.line()).await;
            return;
        }
        if !lead.hold().await {
            warn!(decision = %d.line(), "capacity: no longer the leader; not carried out");
            return;
        }
        let node_of = |id: &str| i.nodes.iter().find(|n| n.id == id).cloned();
        match d {
            Decision::ScaleOut { count, .. } => {
                self.record(None, &d.line()).await;
                self.count("out", "plan");
                for _ in 0..*count {
                    self.seq += 1;
                    let name = format!(
                        "{}-{}-{}-{}",
                        self.s.pool,
                        lead.epoch().unwrap_or(0),
                        now_unix_ms() / 1000,
                        self.seq
                    );
                    let (s, template) = (&self.s, &self.template);
                    let render = |c: &warden_forecast::hetzner::provision::Candidate, gb: f64| {
                        s.render(template, &name, gb, &c.server_type, &c.location)
                    };
                    match while_leading(lead, self.cloud.create(&name, &render)).await {
                        Ok((_, what)) => {
                            let verb = if self.cloud.dry_run() {
                                "would buy"
                            } else {
                                "bought"
                            };
                            self.record(Some(&name), &format!("scale_out: {verb} {name}: {what}"))
                                .await;
                        }
                        Err(e) => {
                            self.count("out", "failed");
                            self.record(None, &format!("scale_out failed: {e}")).await;
                            break;
                        }
                    }
                }
            }
            Decision::Undrain { node, .. } => {
                self.set_state(node, NodeState::Draining, NodeState::Ready, d)
                    .await;
            }
            Decision::Drain { node, .. } => {
                self.set_state(node, NodeState::Ready, NodeState::Draining, d)
                    .await;
                self.count("in", "drain");
            }
            Decision::Delete { node, cloud_id, .. } => {
                // Re-read: a server placed since the plan keeps the node.
                match self.store.node(node).await {
                    Ok(Some(n)) if n.servers == 0 && n.allocated_gb <= 0.0 => {}
                    _ => return,
                }
                if node_of(node).is_none() {
                    return;
                }
                self.give_back(node, *cloud_id, &d.line(), lead).await;
            }
            Decision::Hold { .. } => {}
        }
    }

    /// Fences node `node` (dead: it may take nothing more) and deletes its cloud server.
    async fn give_back(&mut self, node: &str, cloud_id: u64, line: &str, lead: &mut Leadership) {
        if !self.cloud.dry_run() {
            if let Ok(Some(n)) = self.store.node(node).await {
                if n.state != NodeState::Dead {
                    if let Err(e) = self
                        .store
                        .set_node_state(node, n.state, NodeState::Dead)
                        .await
                    {
                        self.record(Some(node), &format!("delete of {node} postponed: {e}"))
                            .await;
                        return;
                    }
                }
            }
        }
        match while_leading(lead, self.cloud.delete(cloud_id)).await {
            Ok(()) => {
                self.count("in", "delete");
                self.record(Some(node), line).await;
            }
            Err(e) => {
                self.record(Some(node), &format!("delete of {node} failed: {e}"))
                    .await
            }
        }
    }

    async fn set_state(&mut self, node: &str, from: NodeState, to: NodeState, d: &Decision) {
        if self.cloud.dry_run() {
            self.record(Some(node), &format!("{} (dry run)", d.line()))
                .await;
            return;
        }
        match self.store.set_node_state(node, from, to).await {
            Ok(_) => self.record(Some(node), &d.line()).await,
            Err(e) => {
                self.record(Some(node), &format!("{} not done: {e}", d.kind()))
                    .await
            }
        }
    }

    /// Cloud servers of the pool that never joined within the grace, and bought nodes that
    /// died: billed for nothing.
    async fn collect_orphans(
        &mut self,
        nodes: &[NodeRecord],
        cloud: &[CloudServer],
        lead: &mut Leadership,
        now: u64,
    ) {
        for c in cloud {
            let node = nodes.iter().find(|n| n.id == c.name);
            let why = match node {
                None if now.saturating_sub(c.created_ms) >= self.grace_ms() => format!(
                    "orphan: {} never joined the fleet ({} s after it was created)",
                    c.name,
                    now.saturating_sub(c.created_ms) / 1000
                ),
                Some(n)
                    if n.state == NodeState::Dead
                        && now.saturating_sub(n.since_unix_ms) >= self.grace_ms() =>
                {
                    format!("orphan: node {} is dead", c.name)
                }
                _ => continue,
            };
            if !lead.hold().await {
                return;
            }
            self.count("in", "orphan");
            self.give_back(&c.name, c.id, &format!("delete: {why}"), lead)
                .await;
        }
    }

    /// Adds the hours the cloud started billing since the last round to the cost counter.
    fn count_cost(&mut self, cloud: &[CloudServer], now: u64, hour_ms: u64) {
        for c in cloud {
            let hours = billed_hours(c.created_ms, now, hour_ms);
            let before = self.billed.insert(c.id, hours).unwrap_or(0);
            if let Some(m) = &self.metrics {
                if hours > before {
                    m.cost.inc_by((hours - before) as f64 * c.hourly_price);
                }
            }
        }
    }

    fn count(&self, direction: &str, reason: &str) {
        if let Some(m) = &self.metrics {
            m.events.with_label_values(&[direction, reason]).inc();
        }
    }

    /// Logs, keeps for the view and announces a decision; a hold is announced only when
    /// its reason's kind changes.
    async fn record(&mut self, node: Option<&str>, line: &str) {
        let at = now_unix_ms();
        let is_hold = line.starts_with("hold");
        if is_hold
            && self
                .decisions
                .back()
                .is_some_and(|d| d.line.starts_with("hold"))
        {
            // Refresh the standing hold instead of piling them up.
            if let Some(last) = self.decisions.back_mut() {
                last.line = line.to_string();
                last.at_unix_ms = at;
            }
            return;
        }
        info!(decision = line, "capacity");
        (self.announce)(node, line);
        // The store's feed: every appliance's live event stream shows it.
        let event = warden_store::FleetEvent {
            kind: "scaling".into(),
            node: node.map(str::to_string),
            reason: line.to_string(),
            at_unix_ms: at,
        };
        if let Err(e) = self.store.record_fleet_event(event).await {
            warn!(error = %e, "capacity: the decision is not on the event feed");
        }
        self.decisions.push_back(DecisionRecord {
            at_unix_ms: at,
            node: node.map(str::to_string),
            line: line.to_string(),
        });
        while self.decisions.len() > KEEP_DECISIONS {
            self.decisions.pop_front();
        }
    }

    fn view(
        &self,
        history: &History,
        views: &[NodeView],
        i: &Inputs,
        spent: f64,
        learned: bool,
    ) -> CapacityView {
        let hour_ms = i.hour_ms;
        let actual = history
            .gb
            .iter()
            .enumerate()
            .rev()
            .take(48)
            .map(|(k, gb)| ForecastHour {
                hour_unix_ms: ((history.first_hour + k as i64).max(0) as u64) * hour_ms,
                gb: *gb,
                upper_gb: None,
            })
            .rev()
            .collect();
        let (forecast, method) = match &self.forecast {
            Some((origin, upper, point, method)) => (
                point
                    .iter()
                    .zip(upper)
                    .enumerate()
                    .map(|(k, (p, u))| ForecastHour {
                        hour_unix_ms: ((origin + k as i64).max(0) as u64) * hour_ms,
                        gb: *p,
                        upper_gb: Some(*u),
                    })
                    .collect(),
                Some(method.clone()),
            ),
            None => (Vec::new(), None),
        };
        CapacityView {
            leader: self.me.clone(),
            at_unix_ms: i.now_ms,
            provider: if self.cloud.dry_run() {
                "dry-run"
            } else {
                "hetzner"
            }
            .into(),
            nodes: views.to_vec(),
            pending: i.pending_gb.len(),
            capacity_gb: views.iter().filter(|n| n.ready).map(|n| n.memory_gb).sum(),
            used_gb: views.iter().map(|n| n.allocated_gb).sum(),
            waiting_gb: views.iter().map(|n| n.waiting_gb).sum(),
            forecast_gb: i.forecast_gb,
            quantile: i.quantile,
            method,
            lead_time_ms: i.lead_ms,
            lead_time_learned: learned,
            spares: i.spares,
            node_gb: i.node_gb,
            cost_today_eur: spent,
            actual,
            forecast,
            decisions: self.decisions.iter().cloned().collect(),
        }
    }
}

/// The fleet's nodes as the plan sees them, each with its cloud server if the pool
/// bought it.
fn node_views(nodes: &[NodeRecord], cloud: &[CloudServer], now: u64) -> Vec<NodeView> {
    nodes
        .iter()
        .filter(|n| n.has_role(warden_store::NodeRole::Node) && n.state != NodeState::Dead)
        .map(|n| NodeView {
            id: n.id.clone(),
            memory_gb: n.memory_gb,
            allocated_gb: n.allocated_gb,
            waiting_gb: n.waiting_gb,
            servers: n.servers,
            ready: n.takes_servers(now),
            draining: n.state == NodeState::Draining,
            cloud: cloud.iter().find(|c| c.name == n.id).map(|c| CloudNode {
                id: c.id,
                created_ms: c.created_ms,
                hourly_price: c.hourly_price,
            }),
        })
        .collect()
}

/// Runs a cloud call (a create or delete polls its action for up to minutes) while
/// renewing the lease every [`RENEW`], so a slow call does not let the lease lapse and a
/// second leader buy the same node again. Losing the lease meanwhile does not abandon the
/// call: it finishes (a failed create still deletes its half-made server), and the next
/// leader sees its server in the pool.
async fn while_leading<T>(lead: &mut Leadership, call: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(call);
    loop {
        tokio::select! {
            out = &mut call => return out,
            _ = tokio::time::sleep(RENEW) => {
                lead.hold().await;
            }
        }
    }
}

/// Hours billed for a server alive from `created` to `now`: every started hour.
pub fn billed_hours(created: u64, now: u64, hour_ms: u64) -> u64 {
    now.saturating_sub(created).div_ceil(hour_ms.max(1)).max(1)
}

/// What the pool's servers cost today (UTC) so far: billed hours since midnight.
fn cost_today(cloud: &[CloudServer], now: u64, hour_ms: u64) -> f64 {
    let day = now - now % 86_400_000;
    cloud
        .iter()
        .map(|c| billed_hours(c.created_ms.max(day), now, hour_ms) as f64 * c.hourly_price)
        .sum()
}
