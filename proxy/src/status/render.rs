//! Status documents Warden writes itself, for servers that can't answer.
//!
//! The version's protocol echoes the client's, so the server list shows the MOTD rather
//! than "incompatible version" (PicoLimbo does the same). The MOTD is chosen by state.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use crate::admission::ServerState;
use crate::route::StatusTexts;
use crate::wire::status_response_packet;

/// Why Warden is answering instead of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standin {
    /// The backend should be up but did not answer.
    Offline,
    State(ServerState),
}

/// The MOTD for a stand-in answer.
pub fn motd(texts: &StatusTexts, why: Standin, eta: Option<Duration>) -> String {
    let template = match why {
        Standin::Offline => &texts.offline,
        Standin::State(state) => match state {
            ServerState::Active => &texts.offline,
            ServerState::Starting | ServerState::Restoring | ServerState::Swapping => {
                &texts.starting
            }
            ServerState::Stopping | ServerState::Archiving => &texts.stopping,
            ServerState::Sleeping => &texts.sleeping,
            ServerState::Archived => &texts.archived,
            ServerState::Failed => &texts.failed,
        },
    };
    template.replace("{eta}", &eta_text(eta))
}

/// "~38 s", "~2 min", or "a moment" when nothing has been measured yet.
pub fn eta_text(eta: Option<Duration>) -> String {
    match eta {
        None => "a moment".into(),
        Some(d) if d.as_secs() < 90 => format!("~{} s", d.as_secs().max(1)),
        Some(d) => format!("~{} min", d.as_secs().div_ceil(60)),
    }
}

/// A framed Status Response for a stand-in answer.
pub fn standin_frame(
    texts: &StatusTexts,
    why: Standin,
    eta: Option<Duration>,
    client_protocol: i32,
) -> Bytes {
    let mut doc = json!({
        "version": { "name": texts.version_name, "protocol": client_protocol },
        "players": { "max": 0, "online": 0 },
        "description": { "text": motd(texts, why, eta) },
    });
    if let Some(icon) = &texts.favicon {
        doc["favicon"] = json!(icon);
    }
    status_response_packet(&doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_state_motd_with_eta() {
        let t = StatusTexts::default();
        assert_eq!(
            motd(
                &t,
                Standin::State(ServerState::Starting),
                Some(Duration::from_secs(38))
            ),
            "§eStarting… usually ready in ~38 s"
        );
        assert_eq!(eta_text(Some(Duration::from_secs(150))), "~3 min");
        assert_eq!(motd(&t, Standin::Offline, None), t.offline);
        assert_eq!(
            motd(&t, Standin::State(ServerState::Sleeping), None),
            t.sleeping
        );
    }
}
