//! Everything the edge tells a player it turns away, in one place, and the bounded write
//! that delivers it.
//!
//! A leaf: it imports nothing from the other edge steps, so any step can say goodbye without
//! a path leading back into it.

use std::borrow::Cow;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::route::ServerId;
use crate::wire::disconnect_packet;

/// Why a player gets a login Disconnect instead of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Goodbye {
    /// Too many logins from the player's network.
    RateLimited,
    /// The server's address leads back to this Warden (a routing loop).
    Loop,
    /// The backend refused the connection.
    Unreachable(ServerId),
    /// The backend did not accept the connection in time.
    NoAnswer(ServerId),
    /// The backend hung up before the login got anywhere.
    ClosedBeforeLogin(ServerId),
    /// The control plane's own words (the server cannot be started, …).
    Refused(String),
}

impl Goodbye {
    /// What the player reads.
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match self {
            Goodbye::RateLimited => Cow::Borrowed(
                "Too many login attempts from your network. Please wait a few seconds and try again.",
            ),
            Goodbye::Loop => Cow::Borrowed(
                "This server's address leads back to the proxy itself (a routing loop). \
                 Please tell the server's operator.",
            ),
            Goodbye::Unreachable(server) => Cow::Owned(format!(
                "{server} is not reachable right now. Please try again in a moment."
            )),
            Goodbye::NoAnswer(server) => Cow::Owned(format!(
                "{server} did not answer in time. Please try again in a moment."
            )),
            Goodbye::ClosedBeforeLogin(server) => Cow::Owned(format!(
                "{server} closed the connection before you could log in. Please try again."
            )),
            Goodbye::Refused(reason) => Cow::Borrowed(reason),
        }
    }
}

/// Sends a login Disconnect and closes, waiting at most `within` for a slow client.
pub(crate) async fn say(mut client: TcpStream, goodbye: &Goodbye, within: Duration) {
    let packet = disconnect_packet(&goodbye.text());
    let _ = timeout(within, async {
        client.write_all(&packet).await?;
        client.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_name_the_server() {
        let id: ServerId = "survival".into();
        assert_eq!(
            Goodbye::ClosedBeforeLogin(id.clone()).text(),
            "survival closed the connection before you could log in. Please try again."
        );
        assert!(Goodbye::Unreachable(id)
            .text()
            .starts_with("survival is not"));
        assert_eq!(Goodbye::Refused("x".into()).text(), "x");
        assert!(Goodbye::Loop
            .text()
            .ends_with("Please tell the server's operator."));
    }
}
