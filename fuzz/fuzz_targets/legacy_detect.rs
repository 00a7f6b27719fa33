//! Legacy (0xFE) ping detection on the prefixes of arbitrary bytes.
//!
//! The proxy calls `detect` on what it has read so far, again after each read, and once
//! more with `more_may_come = false` when the short legacy grace runs out. Properties:
//! - a verdict (anything but `NeedMore`) with `more_may_come = true` is final: every longer
//!   prefix gets exactly the same verdict (Modern never turns Legacy or back, the parsed
//!   1.6 ping does not change, an error stays the same error);
//! - `more_may_come` only matters where `true` says `NeedMore`: after `FE` alone it turns into
//!   the Beta ping, after `FE 01` (or a partial `FE 01 FA …`, as mcstatus sends) into the
//!   1.4 ping; elsewhere the verdicts agree;
//! - `NeedMore` never lasts beyond 546 bytes (FE 01 FA, channel length and 11 UTF-16 units,
//!   data length, at most 517 bytes of data), so a scanner cannot make the proxy buffer more;
//! - `Modern` exactly when the bytes cannot start a legacy ping; a 1.6 ping's host has at
//!   most 255 characters (and UTF-16 units);
//! - the reply built for any detected ping is a well-formed 0xFF kick packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_wire::legacy::{detect, response, Detection, LegacyPing, LegacyStatus};

/// Longest prefix that can still be `NeedMore`: 3 + 2 + 2 * 11 + 2 + (7 + 2 * 255) - 1.
const MAX_UNDECIDED: usize = 545;

fn check_reply(ping: &LegacyPing, motd: &str) {
    let status = LegacyStatus {
        protocol: 127,
        version: "1.21",
        motd,
        online: 1,
        max: 20,
    };
    let r = response(ping, &status);
    assert_eq!(r[0], 0xFF);
    let len = u16::from_be_bytes([r[1], r[2]]) as usize;
    assert_eq!(r.len(), 3 + 2 * len);
}

fuzz_target!(|data: &[u8]| {
    // Every prefix would cost ~1000 `detect` calls per input; the verdict can only change
    // where a field ends, so check every short prefix, the bytes around the end of the
    // MC|PingHost data (offset 29 + its length), a stride through the rest, the
    // NeedMore bound and the whole input.
    let mut cuts: Vec<usize> = (0..=40).collect();
    if data.len() >= 29 {
        let data_len = u16::from_be_bytes([data[27], data[28]]) as usize;
        cuts.extend(29 + data_len - 2..=29 + data_len + 2);
    }
    cuts.extend((41..data.len()).step_by(37));
    cuts.extend([MAX_UNDECIDED, MAX_UNDECIDED + 1, data.len()]);
    cuts.retain(|&k| k <= data.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut settled: Option<Result<Detection, _>> = None;
    let mut previous = None;

    for k in cuts {
        let buf = &data[..k];
        let more = detect(buf, true);
        let last = detect(buf, false);

        if let Some(first) = &settled {
            assert_eq!(&more, first, "verdict changed at {k} bytes");
        }

        match &more {
            Ok(Detection::NeedMore) => {
                assert!(k <= MAX_UNDECIDED, "still undecided after {k} bytes");
                let legacy_prefix = [0xFE, 0x01, 0xFA];
                assert!(buf.iter().zip(legacy_prefix).all(|(a, b)| *a == b));
                match k {
                    0 => assert_eq!(last, Ok(Detection::NeedMore)),
                    1 => assert_eq!(last, Ok(Detection::Legacy(LegacyPing::Beta))),
                    2 => assert_eq!(last, Ok(Detection::Legacy(LegacyPing::V1_4))),
                    // A partial 1.6 ping is answered like 1.4 once the client stops sending.
                    _ => assert_eq!(last, Ok(Detection::Legacy(LegacyPing::V1_4))),
                }
            }
            verdict => {
                assert_eq!(
                    &last, verdict,
                    "more_may_come changed a verdict at {k} bytes"
                );
                if settled.is_none() {
                    settled = Some(verdict.clone());
                }
            }
        }

        // The per-verdict checks below are costly (they build replies); a verdict that
        // repeats the previous prefix's was already checked.
        if previous.as_ref() == Some(&(more.clone(), last.clone())) {
            continue;
        }
        previous = Some((more.clone(), last.clone()));

        match &more {
            Ok(Detection::Modern) => {
                assert!(!buf.is_empty());
                assert!(buf[0] != 0xFE || buf[1] != 0x01 || buf[2] != 0xFA);
            }
            Ok(Detection::Legacy(ping)) => {
                let LegacyPing::V1_6 { host, .. } = ping else {
                    panic!("Beta/1.4 ping while more bytes may come");
                };
                assert!(buf.starts_with(&[0xFE, 0x01, 0xFA]));
                assert!(host.chars().count() <= 255);
                assert!(host.encode_utf16().count() <= 255);
                check_reply(ping, host);
            }
            Ok(Detection::NeedMore) => {}
            Err(_) => assert!(buf.starts_with(&[0xFE, 0x01, 0xFA])),
        }
        if let Ok(Detection::Legacy(ping)) = &last {
            check_reply(ping, "");
        }
    }
});
