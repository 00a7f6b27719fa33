//! What the waiting player reads: the dialog, disconnect reasons and the ETA wording.
//!
//! Kept apart from the protocol code so the wording can change without touching packets.
//! Dialog layout: the 1.21.6 dialog description format (minecraft.net Java Edition 1.21.6
//! changelog): a `minecraft:notice` dialog with common fields `title`, `body` (a list of
//! `minecraft:plain_message` elements with text-component `contents`), `can_close_with_escape`,
//! `pause` and `after_action`; the notice's own `action` button is left at its default.

use std::time::Duration;

use warden_wire::nbt::Tag;

use crate::Waiting;

/// Longest server name shown (characters); names come from operator config.
const MAX_NAME_CHARS: usize = 64;
/// Longest disconnect reason shown (characters).
const MAX_REASON_CHARS: usize = 512;

/// A text component `{text: "…"}`.
pub fn component(text: &str) -> Tag {
    Tag::Compound(vec![("text", Tag::String(text.to_owned()))])
}

/// The waiting dialog: server name as the title, what is happening and the ETA as the body.
/// The player cannot dismiss it (there is nothing behind it but "Joining world…"), and the
/// button does nothing, so it stays until the next status or the Transfer.
pub fn dialog(server_name: &str, why: Waiting, eta: Option<Duration>) -> Tag {
    let line = |text: String| {
        vec![
            ("type", Tag::String("minecraft:plain_message".into())),
            ("contents", component(&text)),
        ]
    };
    Tag::Compound(vec![
        ("type", Tag::String("minecraft:notice".into())),
        ("title", component(&clip(server_name, MAX_NAME_CHARS))),
        (
            "body",
            Tag::CompoundList(vec![line(describe(why).to_owned()), line(eta_line(eta))]),
        ),
        ("can_close_with_escape", Tag::Byte(0)),
        ("pause", Tag::Byte(0)),
        ("after_action", Tag::String("none".into())),
    ])
}

/// The reason shown when the server could not be made ready.
pub fn failed(server_name: &str, reason: &str) -> String {
    clip(
        &format!(
            "{} could not be started: {reason}",
            clip(server_name, MAX_NAME_CHARS)
        ),
        MAX_REASON_CHARS,
    )
}

/// The reason shown when the wait exceeded the anteroom's limit.
pub fn gave_up(server_name: &str) -> String {
    format!(
        "{} is taking too long to start. Please try again in a few minutes.",
        clip(server_name, MAX_NAME_CHARS)
    )
}

/// The reason shown when nobody reports the server's progress any more.
pub const UNAVAILABLE: &str = "The server is unavailable right now. Please try again.";

/// The reason shown when a ticket cannot be issued.
pub const INTERNAL: &str = "Something went wrong on our side. Please join again.";

pub fn describe(why: Waiting) -> &'static str {
    match why {
        Waiting::Waking => "The server is starting up…",
        Waiting::Restoring => "The world is being restored from the archive…",
        Waiting::Recovering => {
            "Its machine went down: recovering the world from the latest backup…"
        }
        Waiting::Restarting => "The server is restarting…",
        Waiting::Capacity => "Waiting for a free machine to run the server on…",
    }
}

/// "About 40 seconds left", rounded up to 5 s below a minute and to whole minutes above.
pub fn eta_line(eta: Option<Duration>) -> String {
    let Some(eta) = eta else {
        return "You will join automatically as soon as it is ready.".to_owned();
    };
    let secs = eta.as_secs();
    if secs < 5 {
        "Almost ready…".to_owned()
    } else if secs < 60 {
        format!("About {} seconds left.", secs.div_ceil(5) * 5)
    } else {
        let mins = secs.div_ceil(60);
        format!(
            "About {mins} minute{} left.",
            if mins == 1 { "" } else { "s" }
        )
    }
}

fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_wording() {
        assert_eq!(eta_line(Some(Duration::from_secs(2))), "Almost ready…");
        assert_eq!(
            eta_line(Some(Duration::from_secs(38))),
            "About 40 seconds left."
        );
        assert_eq!(
            eta_line(Some(Duration::from_secs(60))),
            "About 1 minute left."
        );
        assert_eq!(
            eta_line(Some(Duration::from_secs(61))),
            "About 2 minutes left."
        );
        assert!(eta_line(None).contains("automatically"));
    }

    #[test]
    fn clipping() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hé", 2), "hé");
        assert!(failed(&"x".repeat(1000), &"y".repeat(1000)).chars().count() <= 513);
    }
}
