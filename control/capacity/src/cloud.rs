//! The cloud the controller buys nodes from: the Hetzner provisioner of `warden-forecast`
//! (cheapest fitting type and location from the API's own prices, fallback when one is
//! unavailable, clean-up of failed creates, rate limits), or a dry run that changes
//! nothing. The cloud's own list of the pool's servers is the truth about what was bought,
//! so a new leader never buys twice what the old one bought.

use std::time::Duration;

use warden_forecast::hetzner::api::{Client, ClientConfig};
use warden_forecast::hetzner::provision::{Candidate, Provisioner, ProvisionerConfig};

use crate::settings::{CapacitySettings, Provider};
use crate::CapacityError;

/// A server of the pool at the cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudServer {
    pub id: u64,
    pub name: String,
    pub created_ms: u64,
    pub server_type: String,
    pub hourly_price: f64,
    pub memory_gb: f64,
}

pub struct Cloud {
    provisioner: Provisioner,
    dry_run: bool,
    /// The type bought when there is no API to ask (dry run without a token).
    fallback_gb: f64,
    reserve_gb: f64,
}

impl Cloud {
    pub fn new(s: &CapacitySettings, user_data: String) -> Result<Self, CapacityError> {
        let token = std::env::var(&s.token_env).unwrap_or_default();
        let mut cfg = ClientConfig::new(token);
        cfg.base_url = s.api_url.trim_end_matches('/').to_string();
        cfg.request_timeout = Duration::from_secs(10);
        let client = Client::new(cfg).map_err(|e| CapacityError::Cloud(e.to_string()))?;
        let dry_run = s.provider == Provider::DryRun;
        let provisioner = Provisioner::new(
            client,
            ProvisionerConfig {
                pool: s.pool.clone(),
                image: s.template.node_image(),
                user_data,
                locations: s.template.locations.clone(),
                server_types: s.template.server_types.clone(),
                min_memory_gb: 0.0,
                labels: s.template.labels.clone(),
                name_prefix: s.pool.clone(),
                dry_run,
                action_poll: Duration::from_millis(500),
                action_deadline: Duration::from_secs(300),
            },
        );
        Ok(Cloud {
            provisioner,
            dry_run,
            fallback_gb: s.template.memory_gb,
            reserve_gb: s.template.reserve_gb,
        })
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// What the next node bought would offer, and cost an hour (the cheapest fitting
    /// candidate, from the API's prices).
    pub async fn next_node(&self) -> Result<(f64, f64), CapacityError> {
        match self.provisioner.candidates().await {
            Ok(c) => c
                .first()
                .map(|c| ((c.memory_gb - self.reserve_gb).max(0.5), c.hourly_price))
                .ok_or_else(|| CapacityError::Cloud("no server type fits the template".into())),
            Err(_) if self.dry_run => Ok((self.fallback_gb, 0.0)),
            Err(e) => Err(CapacityError::Cloud(e.to_string())),
        }
    }

    /// The pool's servers (none in a dry run without an API).
    pub async fn list(&self) -> Result<Vec<CloudServer>, CapacityError> {
        let servers = match self.provisioner.list().await {
            Ok(s) => s,
            Err(_) if self.dry_run => return Ok(Vec::new()),
            Err(e) => return Err(CapacityError::Cloud(e.to_string())),
        };
        let prices = self.provisioner.candidates().await.unwrap_or_default();
        Ok(servers
            .into_iter()
            .map(|s| {
                let loc = s.datacenter.as_ref().map(|d| d.location.name.clone());
                let c = prices.iter().find(|c| {
                    c.server_type == s.server_type.name && Some(&c.location) == loc.as_ref()
                });
                CloudServer {
                    id: s.id,
                    created_ms: s.created.as_deref().and_then(parse_rfc3339_ms).unwrap_or(0),
                    server_type: s.server_type.name.clone(),
                    hourly_price: c.map(|c| c.hourly_price).unwrap_or(0.0),
                    memory_gb: c.map(|c| c.memory_gb - self.reserve_gb).unwrap_or(0.0),
                    name: s.name,
                }
            })
            .collect())
    }

    /// Buys node `name` with the user data `render` makes for the candidate bought.
    pub async fn create(
        &self,
        name: &str,
        render: &(dyn Fn(&Candidate, f64) -> String + Sync),
    ) -> Result<(Option<u64>, String), CapacityError> {
        let reserve = self.reserve_gb;
        let user_data = |c: &Candidate| render(c, (c.memory_gb - reserve).max(0.5));
        let p = self
            .provisioner
            .create_node(name, &user_data)
            .await
            .map_err(|e| CapacityError::Cloud(e.to_string()))?;
        Ok((
            p.id,
            format!(
                "{} in {} at {:.4} €/h",
                p.candidate.server_type, p.candidate.location, p.candidate.hourly_price
            ),
        ))
    }

    pub async fn delete(&self, id: u64) -> Result<(), CapacityError> {
        self.provisioner
            .scale_in(id)
            .await
            .map_err(|e| CapacityError::Cloud(e.to_string()))
    }
}

/// `2026-12-01T10:00:00+00:00` (or `Z`, with fractions) → unix ms; None if not RFC 3339.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, u32, u32) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let tz_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let (time, tz) = rest.split_at(tz_at);
    let mut t = time.split(':');
    let (hh, mm): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let secs: f64 = t.next().unwrap_or("0").parse().ok()?;
    let offset_min: i64 = match tz {
        "" | "Z" => 0,
        _ => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let mut o = tz[1..].split(':');
            let oh: i64 = o.next()?.parse().ok()?;
            let om: i64 = o.next().unwrap_or("0").parse().ok()?;
            sign * (oh * 60 + om)
        }
    };
    let days = warden_forecast::calendar::days_from_civil(y, m, day);
    let ms = ((days * 86_400 + hh * 3600 + mm * 60 - offset_min * 60) as f64 + secs) * 1000.0;
    (ms >= 0.0).then_some(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_read_with_offsets() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:01+01:00"), Some(1000));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5+00:00"), Some(1500));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
