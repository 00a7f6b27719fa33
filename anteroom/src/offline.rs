//! Offline-mode player UUIDs, for Login Start packets that carry none.
//!
//! Every protocol the anteroom speaks sends a UUID in Login Start, so this is a fallback.
//! The offline UUID is a name-based UUID version 3: MD5 of `"OfflinePlayer:" + name` with the
//! version and variant bits set.

use md5::{Digest, Md5};

pub fn offline_uuid(name: &str) -> u128 {
    let mut hash = Md5::new();
    hash.update(b"OfflinePlayer:");
    hash.update(name.as_bytes());
    let mut b: [u8; 16] = hash.finalize().into();
    b[6] = (b[6] & 0x0f) | 0x30;
    b[8] = (b[8] & 0x3f) | 0x80;
    u128::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names() {
        assert_eq!(
            offline_uuid("Notch"),
            0xb50ad385_829d_3141_a216_7e7d7539ba7f
        );
        assert_eq!(
            offline_uuid("player"),
            0xb1033201_7292_3cac_9bf0_2059ac139adc
        );
    }
}
