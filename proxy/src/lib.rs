//! Warden's data plane.
//!
//! Follow one player: [`edge`] accepts the TCP connection (pingora owns the listener and
//! the graceful upgrade), reads the handshake under strict limits, asks [`route`] for the
//! host's server, answers server-list pings from [`status`], and forwards a login to its
//! backend, handing both sockets to [`relay`], which carries the bytes (with `splice` for
//! bulk). [`admission`] is the seam through which the control plane tells the edge whether
//! a server is up, wakes it, or takes the player over.
//!
//! Around the path: [`limits`] (per-network rates and connection caps), [`shed`] (making
//! room when the edge is full), [`loopguard`] (routing loops back into Warden),
//! [`sessions`] (live sessions the control plane counts), [`settings`] (routes and knobs,
//! swapped as one snapshot) and [`metrics`]. The wire protocol is [`wire`] (warden-wire).

pub mod route;
pub use warden_wire as wire;

pub mod admission;
pub mod edge;
pub mod landing;
pub mod limits;
pub mod loopguard;
pub mod metrics;
pub mod relay;
pub mod sessions;
pub mod settings;
pub mod shed;
mod splice;
pub mod status;

pub use edge::{Edge, EdgeService};
