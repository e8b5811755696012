//! Kafka's murmur2 and the default partitioner's key-to-partition mapping,
//! bit for bit, so a weir topic places a keyed message where a Kafka
//! producer would. Pure arithmetic; must never depend on the platform's
//! endianness or integer width.

/// Kafka's `Utils.murmur2`: the 32-bit MurmurHash2 variant with Kafka's seed,
/// returned as Java's signed `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java truncates the length to int; keys longer than 4 GiB cannot reach us.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a keyed message:
/// `toPositive(murmur2(key)) % partitions`. `partitions` of 0 is treated
/// as 1 so the result is always a valid index.
pub fn kafka_partition(key: &[u8], partitions: u32) -> u32 {
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // From Kafka's UtilsTest.testMurmur2.
    const KAFKA_VECTORS: &[(&[u8], i32)] = &[
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];

    #[test]
    fn matches_kafka_utils_test_vectors() {
        for (input, want) in KAFKA_VECTORS {
            assert_eq!(
                murmur2(input),
                *want,
                "murmur2({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn partition_is_to_positive_modulo() {
        // toPositive(-790332482) = 1357151166.
        assert_eq!(kafka_partition(b"foobar", 10), 1_357_151_166 % 10);
        assert_eq!(kafka_partition(b"foobar", 50), 16);
        assert_eq!(kafka_partition(b"foobar", 0), 0);
    }
}
