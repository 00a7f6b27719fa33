//! Warden's data plane.
//!
//! Follow one player: [`edge`] accepts the TCP connection (pingora owns the listener and the
//! graceful upgrade), [`edge::preroute`] reads the handshake under strict limits, [`route`]
//! finds the server for the host, [`status`] answers server-list pings at the edge, and
//! [`forward`] connects the backend, replays what the client sent and hands both sockets to
//! [`relay`], which carries the bytes. [`lifecycle`] is the seam through which the control
//! plane tells the data plane whether a server is up, wakes it, or takes the player over.

pub mod route;
pub use warden_wire as wire;

pub mod edge;
pub mod lifecycle;
pub mod limits;
pub mod loopguard;
pub mod metrics;
pub mod relay;
pub mod sessions;
pub mod settings;
pub mod shed;
mod splice;
pub mod status;

pub use edge::{Edge, EdgeApp};
