//! Placement decisions per second: 10,000 servers placed one after another on 100 nodes of
//! mixed sizes (16-64 GB) and labels, each decision over the whole fleet, with the chosen
//! node's load updated before the next (as the fleet fills, best-fit gets harder).
//!
//! Run: `cargo run --release -p warden-lifecycle --example placement_bench [-- SERVERS NODES]`
//! (or, without a release build of every dependency, in the dev profile with this crate
//! optimised: `--config 'profile.dev.package.warden-lifecycle.opt-level=3'`).

use std::collections::BTreeMap;
use std::time::Instant;

use warden_lifecycle::placement::{fits, place, Need, NodeLoad};

fn main() {
    let mut args = std::env::args().skip(1);
    let servers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let zones: Vec<BTreeMap<String, String>> = ["eu", "us"]
        .iter()
        .map(|z| [("zone".to_string(), z.to_string())].into())
        .collect();
    let ids: Vec<String> = (0..nodes).map(|i| format!("node-{i:03}")).collect();
    let mut fleet: Vec<NodeLoad<'_>> = (0..nodes)
        .map(|i| NodeLoad {
            id: &ids[i],
            capacity_gb: [16.0, 32.0, 48.0, 64.0][i % 4],
            allocated_gb: 0.0,
            servers: 0,
            labels: &zones[i % 2],
        })
        .collect();
    let none = BTreeMap::new();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut placed = 0usize;
    let t0 = Instant::now();
    for s in 0..servers {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let memory_gb = [1.0, 2.0, 4.0, 6.0, 8.0][(rng % 5) as usize];
        let labels = if s % 3 == 0 { &zones[s % 2] } else { &none };
        if let Ok(i) = place(&fleet, Need { memory_gb, labels }) {
            // Every third server is woken where it fits: the load the next decisions see.
            let n = &fleet[i];
            if s % 3 == 0 && fits(n.capacity_gb, n.allocated_gb, memory_gb) {
                fleet[i].allocated_gb += memory_gb;
            }
            fleet[i].servers += 1;
            placed += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let used: f64 = fleet.iter().map(|n| n.allocated_gb).sum();
    let capacity: f64 = fleet.iter().map(|n| n.capacity_gb).sum();
    println!(
        "{servers} placements on {nodes} nodes in {:.1} ms: {:.0} decisions/s, {:.2} µs each; \
         {placed} placed, {:.0} of {:.0} GB running",
        secs * 1000.0,
        servers as f64 / secs,
        secs * 1e6 / servers as f64,
        used,
        capacity
    );
}
