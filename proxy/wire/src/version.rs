//! Protocol numbers where something Warden reads or writes changed, each defined once.
//!
//! Source: the protocol documentation and PrismarineJS minecraft-data
//! (`data/pc/<version>/protocol.json`). Compare a client's handshake protocol against these
//! (`protocol >= V1_20_5`); never write the numbers themselves elsewhere.

/// 1.8: the protocol Warden speaks to a backend on behalf of a pre-1.7 (legacy) ping; every
/// modern server answers it, natively or through ViaVersion.
pub const V1_8: i32 = 47;
/// 1.19: Login Start gains optional signature data after the name.
pub const V1_19: i32 = 759;
/// 1.19.1: an optional UUID follows Login Start's signature data.
pub const V1_19_1: i32 = 760;
/// 1.19.3: Login Start's signature data is removed; the optional UUID stays.
pub const V1_19_3: i32 = 761;
/// 1.20.2: Login Start's UUID becomes mandatory.
pub const V1_20_2: i32 = 764;
/// 1.20.5: the first protocol with cookies, Transfer and handshake intent 3.
pub const V1_20_5: i32 = 766;
/// 1.21.2: Login Success loses its trailing `strictErrorHandling` bool (present in 766–767).
pub const V1_21_2: i32 = 768;
/// 1.21.6: the configuration state gains `show_dialog`.
pub const V1_21_6: i32 = 771;

/// What vanilla reports as its protocol in answers to legacy (pre-1.7) pings.
pub const LEGACY_REPLY: i32 = 127;

/// Whether a client of `protocol` knows cookies and Transfer (1.20.5+).
pub fn has_transfer(protocol: i32) -> bool {
    protocol >= V1_20_5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_ordered() {
        let all = [
            V1_8, V1_19, V1_19_1, V1_19_3, V1_20_2, V1_20_5, V1_21_2, V1_21_6,
        ];
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert!(!has_transfer(765));
        assert!(has_transfer(766));
    }
}
