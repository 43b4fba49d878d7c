//! A small deterministic random number generator (SplitMix64): backoff jitter, server-made ids and
//! receipt salts. Seeded from [`crate::BrokerOptions::rng_seed`] or, when absent, from the
//! process's hash randomness.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// SplitMix64.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// A seed from the process's randomness (std's per-process SipHash keys).
    pub(crate) fn entropy_seed() -> u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5745_4952);
        h.finish()
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (modulo bias is negligible for the ranges used).
    pub(crate) fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }

    /// 128 random bits as 32 lowercase hex digits.
    pub(crate) fn hex128(&mut self) -> String {
        // As `format!("{:016x}{:016x}")`, without the formatting machinery (one per publish).
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(32);
        for v in [self.next_u64(), self.next_u64()] {
            out.extend(
                (0..16)
                    .rev()
                    .map(|i| char::from(DIGITS[((v >> (i * 4)) & 0xf) as usize])),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_bounded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        for _ in 0..1000 {
            assert!(a.up_to(10) <= 10);
        }
        assert_eq!(a.up_to(0), 0);
        let _ = a.up_to(u64::MAX);
        assert_eq!(a.hex128().len(), 32);
        let (mut c, mut d) = (Rng::new(9), Rng::new(9));
        let want = format!("{:016x}{:016x}", d.next_u64(), d.next_u64());
        assert_eq!(c.hex128(), want);
        assert_ne!(Rng::entropy_seed(), 0);
    }
}
