//! The controller's metrics: `warden_fleet_capacity_ratio` (RAM in use ÷ capacity),
//! `warden_scaling_events_total{direction,reason}`, `warden_forecast_ram_bytes{tier,horizon}`,
//! `warden_cloud_cost_euros_total` and `warden_capacity_leader` (1 on the deciding
//! appliance).

use prometheus::{Counter, Gauge, GaugeVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::view::CapacityView;

#[derive(Clone)]
pub struct Metrics {
    pub ratio: Gauge,
    pub events: IntCounterVec,
    pub forecast: GaugeVec,
    pub cost: Counter,
    pub leader: IntGauge,
}

const GB: f64 = 1e9;

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Metrics {
            ratio: Gauge::new(
                "warden_fleet_capacity_ratio",
                "RAM of game servers in use ÷ RAM the fleet's ready nodes offer",
            )?,
            events: IntCounterVec::new(
                Opts::new(
                    "warden_scaling_events_total",
                    "Capacity decisions carried out, by direction (out, in) and reason",
                ),
                &["direction", "reason"],
            )?,
            forecast: GaugeVec::new(
                Opts::new(
                    "warden_forecast_ram_bytes",
                    "Forecast RAM demand at the planning quantile, by tier and horizon",
                ),
                &["tier", "horizon"],
            )?,
            cost: Counter::new(
                "warden_cloud_cost_euros_total",
                "Euros the cloud billed for nodes this appliance's controller saw (started hours × hourly price)",
            )?,
            leader: IntGauge::new(
                "warden_capacity_leader",
                "1 while this appliance is the fleet's capacity controller",
            )?,
        };
        registry.register(Box::new(m.ratio.clone()))?;
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.forecast.clone()))?;
        registry.register(Box::new(m.cost.clone()))?;
        registry.register(Box::new(m.leader.clone()))?;
        Ok(m)
    }

    pub(crate) fn show(&self, v: &CapacityView) {
        self.ratio.set(if v.capacity_gb > 0.0 {
            v.used_gb / v.capacity_gb
        } else {
            0.0
        });
        if let Some(f) = v.forecast_gb {
            self.forecast
                .with_label_values(&["all", "lead"])
                .set(f * GB);
        }
        for (h, label) in [(1usize, "1h"), (24, "24h"), (48, "48h")] {
            if let Some(x) = v.forecast.get(h - 1).and_then(|f| f.upper_gb) {
                self.forecast.with_label_values(&["all", label]).set(x * GB);
            }
        }
    }
}
