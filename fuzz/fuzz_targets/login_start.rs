//! Login Start parsing for every protocol layout.
//!
//! Input layout: a selector byte, four bytes of protocol number, then the packet body.
//! The selector picks a protocol at or around each layout change (so every branch is
//! reached at once) or, for selector values past the table, the raw protocol number.
//!
//! Properties, on success:
//! - the name has at most 16 characters;
//! - the UUID is present from 1.20.2 (764) on, absent before 1.19.1 (760);
//! - the canonical body for that protocol (no signature data) parses back to the same
//!   value, and is no longer than the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_wire::version::{V1_19, V1_19_1, V1_19_3, V1_20_2};
use warden_wire::{LoginStart, PacketWriter};

const PROTOCOLS: &[i32] = &[
    i32::MIN,
    -1,
    0,
    5,
    47,
    340,
    758,
    759,
    760,
    761,
    762,
    763,
    764,
    765,
    767,
    769,
    770,
    773,
    775,
    i32::MAX,
];

/// The body a client of `protocol` sends for `ls` (without signature data).
fn encode(ls: &LoginStart, protocol: i32) -> Vec<u8> {
    let mut w = PacketWriter::new(0x00).string(&ls.name);
    let uuid = |w: PacketWriter, u: u128| w.raw(&u.to_be_bytes());
    if protocol >= V1_20_2 {
        w = uuid(w, ls.uuid.expect("1.20.2+ always has a UUID"));
    } else if protocol >= V1_19 {
        if protocol < V1_19_3 {
            w = w.raw(&[0]); // no signature data
        }
        if protocol >= V1_19_1 {
            match ls.uuid {
                Some(u) => w = uuid(w.raw(&[1]), u),
                None => w = w.raw(&[0]),
            }
        }
    }
    // Strip the length prefix: `into_frame` is the only way out of a PacketWriter.
    let frame = w.into_frame();
    let (len, n) = warden_wire::read_varint(&frame).unwrap();
    assert_eq!(len as usize, frame.len() - n);
    frame[n..].to_vec()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let raw = i32::from_le_bytes([data[1], data[2], data[3], data[4]]);
    let protocol = PROTOCOLS.get(data[0] as usize).copied().unwrap_or(raw);
    let body = &data[5..];

    let Ok(ls) = LoginStart::parse(body, protocol) else {
        return;
    };
    assert!(ls.name.chars().count() <= 16, "name {:?}", ls.name);
    if protocol >= V1_20_2 {
        assert!(ls.uuid.is_some());
    }
    if protocol < V1_19_1 {
        assert!(ls.uuid.is_none());
    }
    let again = encode(&ls, protocol);
    assert!(
        again.len() <= body.len(),
        "re-encoding is longer than the input"
    );
    assert_eq!(LoginStart::parse(&again, protocol), Ok(ls));
});
