//! What people see of capacity: the leader writes this view to the store each round, so
//! `/v1/capacity` and `warden capacity` at any appliance show the same nodes, demand,
//! forecast and decisions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct CapacityView {
    /// The appliance deciding.
    pub leader: String,
    pub at_unix_ms: u64,
    /// `hetzner` or `dry-run`.
    pub provider: String,
    pub nodes: Vec<crate::plan::NodeView>,
    /// Nodes bought that have not joined yet.
    pub pending: usize,
    pub capacity_gb: f64,
    pub used_gb: f64,
    pub waiting_gb: f64,
    /// The planning quantile's highest value over the look-ahead, GB (none until two
    /// weeks of history).
    pub forecast_gb: Option<f64>,
    pub quantile: f64,
    /// The forecast method the chain chose.
    pub method: Option<String>,
    pub lead_time_ms: u64,
    /// Learned from this fleet's boots (false: the configured `lead_time`).
    pub lead_time_learned: bool,
    pub spares: usize,
    /// Memory the next node bought would offer, GB.
    pub node_gb: f64,
    pub cost_today_eur: f64,
    /// Peak GB per hour, the last 48 hours (the last one under way).
    pub actual: Vec<ForecastHour>,
    /// The next 48 hours from the start of this one: point and planning quantile.
    pub forecast: Vec<ForecastHour>,
    /// The last decisions, oldest first.
    pub decisions: Vec<DecisionRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ForecastHour {
    pub hour_unix_ms: u64,
    pub gb: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upper_gb: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct DecisionRecord {
    pub at_unix_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<String>,
    /// `kind: reason`, e.g. `scale_out: forecast 41.2 GB at q0.9 in 6 min > capacity 36 GB`.
    pub line: String,
}

/// The last view the leader wrote, if any.
pub async fn read<S: warden_store::Documents + ?Sized>(
    store: &S,
) -> Result<Option<CapacityView>, warden_store::StoreError> {
    let Some(json) = store
        .get_doc("capacity", crate::controller::VIEW_DOC)
        .await?
    else {
        return Ok(None);
    };
    Ok(serde_json::from_str(&json).ok())
}
