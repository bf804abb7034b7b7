//! A fast hasher for the `i32` keys of the hot path (store ids, order ids).
//!
//! std's SipHash costs ~20 ns per lookup, a fifth of the per-event budget. Keys here are small
//! integers chosen upstream, so a folded multiply (the construction of `foldhash`) is enough:
//! it mixes every input bit into both the high bits (hashbrown's control byte) and the low bits
//! (the bucket index), and its seed is drawn from std's `RandomState` per [`State`] so that
//! colliding ids cannot be precomputed. The seed never influences an answer: nothing iterates a
//! map in a way that reaches the output order-sensitively.
//!
//! [`State`]: super::State

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// `HashMap` keyed by an upstream `i32` id.
pub(crate) type IdMap<K, V> = HashMap<K, V, IdHasherBuilder>;

const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a).wrapping_mul(u128::from(b));
    (full as u64) ^ ((full >> 64) as u64)
}

/// Builds [`IdHasher`]s sharing one random seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdHasherBuilder {
    seed: u64,
}

impl IdHasherBuilder {
    /// A builder with a fresh random seed.
    pub(crate) fn random() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5EED_u64);
        Self { seed: seed | 1 }
    }
}

impl BuildHasher for IdHasherBuilder {
    type Hasher = IdHasher;

    #[inline(always)]
    fn build_hasher(&self) -> IdHasher {
        IdHasher { state: self.seed }
    }
}

/// Folded-multiply hasher; optimal for one integer, correct (if slower) for anything.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdHasher {
    state: u64,
}

impl Hasher for IdHasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        self.state
    }

    #[inline(always)]
    fn write_i32(&mut self, i: i32) {
        self.write_u64(u64::from(i as u32));
    }

    #[inline(always)]
    fn write_u64(&mut self, i: u64) {
        self.state = folded_multiply(self.state ^ i, MUL);
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_small_ids_spread_over_high_and_low_bits() {
        let b = IdHasherBuilder::random();
        // 10 000 consecutive ids: a uniform hash leaves no 10-bit bucket and no 7-bit control
        // value empty except with negligible probability (< 1e-30), whatever the seed.
        let hashes: Vec<u64> = (0..10_000).map(|i: i32| b.hash_one(i)).collect();
        let low: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 1023).collect();
        let high: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(low.len() >= 1000, "low bits poorly spread: {}", low.len());
        assert_eq!(high.len(), 128, "top 7 bits should take every value");
    }

    #[test]
    fn same_seed_same_hash() {
        let b = IdHasherBuilder::random();
        assert_eq!(b.hash_one(42_i32), b.hash_one(42_i32));
        assert_ne!(b.hash_one(42_i32), b.hash_one(43_i32));
    }
}
