//! The Minecraft Java wire protocol, as far as an edge router needs it.
//!
//! Warden is a layer-4 router: it speaks the protocol only before routing (handshake,
//! status, Login Start) and when it must answer on the backend's behalf (status at the
//! edge, login Disconnect, legacy pings, the anteroom's waiting room). Everything here is
//! pure and allocation-light so it can be fuzzed without a runtime.
//!
//! Modules: [`version`] (protocol numbers, each defined once); framing and VarInts
//! (`frame`, `varint`); [`packets`] (reader, writer, the `Packet`/`Encode`/`Decode` traits,
//! handshake, Login Start); [`login`] and [`configuration`] (typed packets of those states);
//! [`nbt`] (network NBT for text and dialogs); [`status`] (server-list responses);
//! [`legacy`] (pre-1.7 pings); [`proxy_protocol`] (HAProxy PROXY v1/v2 headers); [`ticket`]
//! (the signed transfer ticket); [`link`] (the two frames of a player's stream on the edge↔node QUIC link) and [`link_control`] (the link's control stream); host normalization (`host`), log-safe strings (`logsafe`)
//! and the error type (`error`).

pub mod configuration;
mod error;
mod frame;
mod host;
pub mod legacy;
pub mod link;
pub mod link_control;
pub mod login;
mod logsafe;
pub mod nbt;
pub mod packets;
pub mod proxy_protocol;
pub mod status;
pub mod ticket;
mod varint;
pub mod version;

pub use error::WireError;
pub use frame::{encode_frame, framed, FrameDecoder, MAX_LENGTH_PREFIX};
pub use host::{normalize_host, HostError, MAX_HOST_CHARS};
pub use logsafe::{log_safe, LogSafe, MAX_LOGGED_CHARS};
pub use packets::{
    disconnect_packet, pong_packet, status_response_packet, Decode, Encode, Handshake, Intent,
    LoginStart, Packet, PacketReader, PacketWriter,
};
pub use status::{parse_status_response, StatusDoc, StatusError};
pub use varint::{read_varint, read_varlong, varint_len, write_varint, write_varlong, VarIntError};
