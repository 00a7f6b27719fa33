//! Starts the fleet's capacity controller (`[capacity]`) beside the engine: its decisions
//! go out as `scaling` events on the engine's feed (the API's live stream and the
//! webhooks), its numbers as metrics. Every appliance with the section runs one; the
//! store's lease lets one decide.

use std::sync::Arc;

use anyhow::Context;
use warden_capacity::{CapacitySettings, Controller};
use warden_lifecycle::events::Event;
use warden_lifecycle::Engine;
use warden_store::now_unix_ms;

pub fn spawn(
    rt: &tokio::runtime::Handle,
    settings: CapacitySettings,
    engine: Arc<Engine>,
    registry: &prometheus::Registry,
) -> anyhow::Result<()> {
    let metrics = warden_capacity::metrics::Metrics::register(registry)
        .context("registering capacity metrics")?;
    let me = engine.appliance().to_string();
    let store = engine.store().clone();
    let announce = Box::new(move |node: Option<&str>, line: &str| {
        engine.announce(Event::scaling(node, line, now_unix_ms()));
    });
    let controller = Controller::new(settings, store, &me, Some(metrics), announce)
        .context("starting the capacity controller")?;
    rt.spawn(controller.run());
    Ok(())
}
