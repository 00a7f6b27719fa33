//! Every packet id the anteroom relies on, in one place (protocol numbers: `warden_wire::version`).
//!
//! Source: PrismarineJS minecraft-data 3.117.0, `data/pc/<version>/protocol.json`, the
//! `login` and `configuration` `mappings` of 1.20.6, 1.21.1, 1.21.3, 1.21.4, 1.21.5, 1.21.6,
//! 1.21.8, 1.21.9, 1.21.11 and 26.1 (protocols 766–775). Every id below is the same in all of
//! them, so the anteroom needs no per-version tables; only the fields noted below differ.

/// Login, clientbound `success` (Login Success): uuid, name, properties[, strictErrorHandling].
pub const LOGIN_SUCCESS: i32 = 0x02;
/// Login, serverbound `login_acknowledged`: no fields; the client is now in configuration.
pub const LOGIN_ACKNOWLEDGED: i32 = 0x03;

/// Configuration, clientbound `disconnect`: reason as anonymous NBT (all of 766–775).
pub const CONFIG_DISCONNECT: i32 = 0x02;
/// Configuration, clientbound `keep_alive`: i64 id.
pub const CONFIG_KEEP_ALIVE: i32 = 0x04;
/// Configuration, clientbound `store_cookie`: identifier key, VarInt-prefixed bytes.
pub const CONFIG_STORE_COOKIE: i32 = 0x0A;
/// Configuration, clientbound `transfer`: string host, VarInt port.
pub const CONFIG_TRANSFER: i32 = 0x0B;
/// Configuration, clientbound `show_dialog` (771+): the dialog itself as anonymous NBT (in
/// play it is a registry holder instead; configuration takes the inline dialog).
pub const CONFIG_SHOW_DIALOG: i32 = 0x12;

/// Configuration, serverbound `keep_alive`: i64 id echoed back.
pub const CONFIG_KEEP_ALIVE_REPLY: i32 = 0x04;
