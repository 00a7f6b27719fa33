//! Hostname routing: which server a player reaches for the address they typed.
//!
//! The table is immutable and swapped whole (arc-swap) on reload, so a lookup never sees
//! half a config and never takes a lock.

mod server;
mod table;
mod wildcard;

pub use server::{Server, ServerId, StatusTexts};
pub use table::{Resolved, RouteTable, RouteTableBuilder, TableError, UnknownHost};
