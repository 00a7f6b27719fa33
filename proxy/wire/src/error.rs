//! One error type for every way a client's bytes can be wrong.
//!
//! Each variant maps to a `kind` label on `warden_handshake_errors_total`, so operators see
//! *what* scanners and broken clients send without logging their bytes.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum WireError {
    #[error("VarInt longer than 5 bytes")]
    VarIntTooLong,
    #[error("length prefix longer than {0} bytes")]
    LengthPrefixTooLong(usize),
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    #[error("negative or zero length")]
    BadLength,
    #[error("packet truncated")]
    Truncated,
    #[error("unexpected packet id {got:#04x}, expected {expected:#04x}")]
    UnexpectedPacket { got: i32, expected: i32 },
    #[error("string of {len} characters exceeds the limit of {max}")]
    StringTooLong { len: usize, max: usize },
    #[error("string is not valid UTF-8")]
    BadUtf8,
    #[error("unknown handshake intent {0}")]
    BadIntent(i32),
    #[error("{0} trailing bytes after the packet")]
    TrailingBytes(usize),
}

impl WireError {
    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::VarIntTooLong => "varint_too_long",
            WireError::LengthPrefixTooLong(_) => "length_prefix_too_long",
            WireError::FrameTooLarge { .. } => "frame_too_large",
            WireError::BadLength => "bad_length",
            WireError::Truncated => "truncated",
            WireError::UnexpectedPacket { .. } => "unexpected_packet",
            WireError::StringTooLong { .. } => "string_too_long",
            WireError::BadUtf8 => "bad_utf8",
            WireError::BadIntent(_) => "bad_intent",
            WireError::TrailingBytes(_) => "trailing_bytes",
        }
    }
}
