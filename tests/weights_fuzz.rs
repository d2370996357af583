//! Fuzzing the Lc0 weight loader with damaged copies of networks the project writes (an SE tower
//! with conv policy and WDL, a plain one with classical heads, as Lc0 files): random, truncated
//! and bit-flipped bytes must give `Err` (or, rarely, `Ok`), never a panic or an abort.
//!
//! The case count is `PROPTEST_CASES` when set (e.g. `PROPTEST_CASES=2000` for a long run);
//! otherwise a modest 48 per property, to keep CI short.

use std::io::{Read, Write};
use std::sync::OnceLock;

use banyan_nn::weights::{
    Architecture, Encoding, NetWeights, from_gzip_bytes, from_protobuf_bytes, to_gzip_bytes,
};
use proptest::prelude::*;

const NETS: &[&str] = &[
    "2x8 SE, conv policy, WDL",
    "2x8, classical policy, classical value",
];

/// The network named `name` in `NETS`, with seeded random weights.
fn written(name: &str) -> NetWeights {
    let arch = match name {
        "2x8 SE, conv policy, WDL" => Architecture::new(2, 8),
        _ => Architecture {
            se_channels: None,
            conv_policy: false,
            policy_channels: 4,
            wdl: false,
            value_channels: 4,
            value_hidden: 32,
            ..Architecture::new(2, 8)
        },
    };
    NetWeights::random(&arch, 7)
}

/// (gzip bytes, protobuf bytes) of each test net, read once.
fn nets() -> &'static Vec<(Vec<u8>, Vec<u8>)> {
    static NETS_BYTES: OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = OnceLock::new();
    NETS_BYTES.get_or_init(|| {
        NETS.iter()
            .map(|name| {
                let gz = to_gzip_bytes(&written(name), Encoding::Linear16).expect("write the net");
                let mut raw = Vec::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_end(&mut raw)
                    .expect("a valid gzip file");
                (gz, raw)
            })
            .collect()
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn the_undamaged_nets_load() {
    for (name, (gz, raw)) in NETS.iter().zip(nets()) {
        assert_eq!(from_gzip_bytes(gz).unwrap().describe(), *name, "as gzip");
        assert_eq!(
            from_protobuf_bytes(raw).unwrap().describe(),
            *name,
            "as protobuf"
        );
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096), magic in any::<bool>()) {
        let mut gz = bytes.clone();
        if magic {
            gz.splice(0..0, [0x1f, 0x8b, 0x08, 0x00]);
        }
        prop_assert!(from_gzip_bytes(&gz).is_err());
        let _ = from_protobuf_bytes(&bytes);
    }

    #[test]
    fn truncated_files(net in 0..NETS.len(), frac in 0.0f64..1.0) {
        let (gz, raw) = &nets()[net];
        let cut = (gz.len() as f64 * frac) as usize;
        prop_assert!(from_gzip_bytes(&gz[..cut]).is_err(), "{} cut at {cut}", NETS[net]);
        let cut = (raw.len() as f64 * frac) as usize;
        let _ = from_protobuf_bytes(&raw[..cut]);
    }

    #[test]
    fn bit_flips(net in 0..NETS.len(),
                 flips in prop::collection::vec((0.0f64..1.0, 0u8..8), 1..16),
                 through_gzip in any::<bool>()) {
        let (_, raw) = &nets()[net];
        let mut bytes = raw.clone();
        for (at, bit) in flips {
            let i = ((bytes.len() - 1) as f64 * at) as usize;
            bytes[i] ^= 1 << bit;
        }
        if through_gzip {
            let _ = from_gzip_bytes(&gzip(&bytes));
        } else {
            let _ = from_protobuf_bytes(&bytes);
        }
    }

    #[test]
    fn overwritten_spans(net in 0..NETS.len(), at in 0.0f64..1.0,
                         junk in prop::collection::vec(any::<u8>(), 1..64)) {
        // Random spans hit varint lengths and tags: huge lengths, wrong wire types.
        let (_, raw) = &nets()[net];
        let mut bytes = raw.clone();
        let i = ((bytes.len() - junk.len()) as f64 * at) as usize;
        bytes[i..i + junk.len()].copy_from_slice(&junk);
        let _ = from_protobuf_bytes(&bytes);
    }

    #[test]
    fn flipped_compressed_bytes(net in 0..NETS.len(), at in 0.0f64..1.0, bit in 0u8..8) {
        let (gz, _) = &nets()[net];
        let mut bytes = gz.clone();
        let i = ((bytes.len() - 1) as f64 * at) as usize;
        bytes[i] ^= 1 << bit;
        let _ = from_gzip_bytes(&bytes);
    }
}
