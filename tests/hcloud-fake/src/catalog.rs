//! What the fake sells: server types with per-location prices (decimal strings, as the
//! API sends them) and the locations, so creates, listings and bills share one table.
//! A test relies on the order of cost per GB: cx42 is the cheapest with 16 GB or more but
//! is not sold in hel1, where cx52 is; cx41 is cheaper still but deprecated.

use serde_json::{json, Value};

/// One location as `datacenter.location` shows it.
pub struct Location {
    pub id: u64,
    pub name: &'static str,
    pub city: &'static str,
    pub country: &'static str,
    pub network_zone: &'static str,
}

/// Every location the fake knows; a create naming another is `invalid_input`.
pub const LOCATIONS: &[Location] = &[
    Location {
        id: 1,
        name: "fsn1",
        city: "Falkenstein",
        country: "DE",
        network_zone: "eu-central",
    },
    Location {
        id: 2,
        name: "nbg1",
        city: "Nuremberg",
        country: "DE",
        network_zone: "eu-central",
    },
    Location {
        id: 3,
        name: "hel1",
        city: "Helsinki",
        country: "FI",
        network_zone: "eu-central",
    },
    Location {
        id: 4,
        name: "ash",
        city: "Ashburn, VA",
        country: "US",
        network_zone: "us-east",
    },
];

pub fn location(name: &str) -> Option<&'static Location> {
    LOCATIONS.iter().find(|l| l.name == name)
}

impl Location {
    /// As `GET /v1/locations` shows it.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "description": format!("{} DC Park 1", self.city),
            "country": self.country, "city": self.city, "latitude": 0.0, "longitude": 0.0,
            "network_zone": self.network_zone
        })
    }
}

/// A server type: (id, name, cores, memory GB, disk GB, hourly net € per location,
/// monthly net cap €, deprecated).
struct Type {
    id: u64,
    name: &'static str,
    cores: u32,
    memory: f64,
    disk: u32,
    hourly: &'static str,
    monthly: &'static str,
    locations: &'static [&'static str],
    deprecated: bool,
}

const TYPES: &[Type] = &[
    Type {
        id: 22,
        name: "cx22",
        cores: 2,
        memory: 4.0,
        disk: 40,
        hourly: "0.0060000000",
        monthly: "3.7900000000",
        locations: &["fsn1", "nbg1"],
        deprecated: false,
    },
    Type {
        id: 32,
        name: "cx32",
        cores: 4,
        memory: 8.0,
        disk: 80,
        hourly: "0.0110000000",
        monthly: "6.8000000000",
        locations: &["fsn1", "nbg1"],
        deprecated: false,
    },
    // cheapest per GB among ≥ 16 GB, but not sold in hel1
    Type {
        id: 42,
        name: "cx42",
        cores: 8,
        memory: 16.0,
        disk: 160,
        hourly: "0.0260000000",
        monthly: "16.4000000000",
        locations: &["fsn1", "nbg1"],
        deprecated: false,
    },
    Type {
        id: 52,
        name: "cx52",
        cores: 16,
        memory: 32.0,
        disk: 320,
        hourly: "0.0540000000",
        monthly: "32.4000000000",
        locations: &["fsn1", "nbg1", "hel1"],
        deprecated: false,
    },
    Type {
        id: 133,
        name: "ccx33",
        cores: 8,
        memory: 32.0,
        disk: 240,
        hourly: "0.0769000000",
        monthly: "47.9900000000",
        locations: &["fsn1", "nbg1", "hel1"],
        deprecated: false,
    },
    Type {
        id: 91,
        name: "cx41",
        cores: 4,
        memory: 16.0,
        disk: 160,
        hourly: "0.0010000000",
        monthly: "0.6000000000",
        locations: &["fsn1"],
        deprecated: true,
    },
];

/// Gross = net × 1.19 (German VAT), as a 10-decimal string like the API's.
fn gross(net: &str) -> String {
    format!("{:.10}", net.parse::<f64>().unwrap_or(0.0) * 1.19)
}

fn type_json(t: &Type) -> Value {
    json!({
        "id": t.id, "name": t.name, "description": t.name.to_uppercase(), "cores": t.cores,
        "memory": t.memory, "disk": t.disk, "deprecated": t.deprecated,
        "deprecation": if t.deprecated {
            json!({"announced": "2024-06-06T00:00:00+00:00",
                   "unavailable_after": "2024-09-06T00:00:00+00:00"})
        } else { Value::Null },
        "storage_type": "local", "cpu_type": "shared", "architecture": "x86",
        "prices": t.locations.iter().map(|loc| json!({
            "location": loc,
            "price_hourly": {"net": t.hourly, "gross": gross(t.hourly)},
            "price_monthly": {"net": t.monthly, "gross": gross(t.monthly)},
            "included_traffic": 21990232555520u64,
            "price_per_tb_traffic": {"net": "1.0000000000", "gross": "1.1900000000"}
        })).collect::<Vec<_>>()
    })
}

/// All server types as `GET /v1/server_types` lists them.
pub fn server_types() -> Vec<Value> {
    TYPES.iter().map(type_json).collect()
}

/// One server type's JSON by name.
pub fn server_type(name: &str) -> Option<Value> {
    TYPES.iter().find(|t| t.name == name).map(type_json)
}

/// One server type's JSON by id.
pub fn server_type_by_id(id: u64) -> Option<Value> {
    TYPES.iter().find(|t| t.id == id).map(type_json)
}

/// Whether the type is sold in the location at all.
pub fn sold_in(name: &str, location: &str) -> bool {
    TYPES
        .iter()
        .any(|t| t.name == name && t.locations.contains(&location))
}

/// (hourly net €, monthly net € cap) of a type; zero for an unknown one.
pub fn price(name: &str) -> (f64, f64) {
    TYPES
        .iter()
        .find(|t| t.name == name)
        .map(|t| {
            (
                t.hourly.parse().unwrap_or(0.0),
                t.monthly.parse().unwrap_or(0.0),
            )
        })
        .unwrap_or((0.0, 0.0))
}
