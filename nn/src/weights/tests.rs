//! Loader tests: project-written nets of every kind, and every kind of bad file (the Lc0 nets
//! themselves are loaded in `nn/tests/lc0_reference.rs`).

use std::io::Write;

use prost::Message;

use super::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The `Net` message of a project-written 3x8 SE net (conv policy, WDL), for tampering.
fn written_message() -> proto::Net {
    let net = NetWeights::random(&Architecture::new(3, 8), 11);
    write::message(&net, Encoding::Linear16).unwrap()
}

#[test]
fn loads_written_nets_of_every_kind() {
    for (seed, arch) in variety().iter().enumerate() {
        let net = NetWeights::random(arch, seed as u64);
        let loaded = from_gzip_bytes(&to_gzip_bytes(&net, Encoding::Float16).unwrap()).unwrap();
        assert_eq!(loaded.describe(), net.describe());
        assert_eq!(loaded.activation, arch.activation);
        assert_eq!(
            loaded.residual[0].se.as_ref().map(|se| se.fc1.outputs),
            arch.se_channels
        );
    }
}

#[test]
fn bad_files_are_clear_errors() {
    let good = gzip(&written_message().encode_to_vec());
    type Check = fn(&LoadError) -> bool;
    let cases: [(&str, Vec<u8>, Check); 5] = [
        ("empty", vec![], |e| matches!(e, LoadError::Empty)),
        ("not gzip", b"PK\x03\x04 not a gzip file".to_vec(), |e| {
            matches!(e, LoadError::NotGzip)
        }),
        ("truncated", good[..good.len() / 2].to_vec(), |e| {
            matches!(e, LoadError::Truncated(_))
        }),
        ("gzip header only", good[..12].to_vec(), |e| {
            matches!(e, LoadError::Truncated(_))
        }),
        ("not protobuf", gzip(b"\xff\xff\xff\xff"), |e| {
            matches!(e, LoadError::Protobuf(_))
        }),
    ];
    for (name, bytes, expected) in cases {
        let error = from_gzip_bytes(&bytes).unwrap_err();
        assert!(expected(&error), "{name}: {error}");
    }
    let missing = load(Path::new("/nonexistent/net.pb.gz")).unwrap_err();
    assert!(matches!(missing, LoadError::NotFound(_)), "{missing}");
    assert!(missing.to_string().contains("/nonexistent/net.pb.gz"));
}

#[test]
fn tampered_nets_are_refused_with_the_cause() {
    type Tamper = fn(&mut proto::Net);
    let cases: [(&str, Tamper, &str); 9] = [
        ("magic", |n| n.magic = 0x1234, "bad magic number 0x1234"),
        (
            "attention",
            |n| {
                n.format
                    .as_mut()
                    .unwrap()
                    .network_format
                    .as_mut()
                    .unwrap()
                    .network = 6
            },
            "attention body",
        ),
        (
            "input",
            |n| {
                n.format
                    .as_mut()
                    .unwrap()
                    .network_format
                    .as_mut()
                    .unwrap()
                    .input = 3
            },
            "canonicalized",
        ),
        (
            "policy",
            |n| {
                n.format
                    .as_mut()
                    .unwrap()
                    .network_format
                    .as_mut()
                    .unwrap()
                    .policy = 3
            },
            "attention policy",
        ),
        (
            "value",
            |n| {
                n.format
                    .as_mut()
                    .unwrap()
                    .network_format
                    .as_mut()
                    .unwrap()
                    .value = 3
            },
            "VALUE_PARAM",
        ),
        (
            "encoding",
            |n| n.format.as_mut().unwrap().weights_encoding = 7,
            "unsupported weights encoding 7",
        ),
        (
            "missing layer",
            |n| n.weights.as_mut().unwrap().residual[2].se = None,
            "missing layer residual[2].se",
        ),
        (
            "short layer",
            |n| {
                n.weights.as_mut().unwrap().residual[1]
                    .conv1
                    .as_mut()
                    .unwrap()
                    .weights
                    .as_mut()
                    .unwrap()
                    .params
                    .truncate(100)
            },
            "layer residual[1].conv1.weights has 50 values, expected 576",
        ),
        (
            "wrong head size",
            |n| {
                n.weights
                    .as_mut()
                    .unwrap()
                    .ip2_val_b
                    .as_mut()
                    .unwrap()
                    .params
                    .truncate(2)
            },
            "layer ip2_val_b has 1 values, expected 3",
        ),
    ];
    let original = written_message();
    for (name, tamper, message) in cases {
        let mut net = original.clone();
        tamper(&mut net);
        let error = from_gzip_bytes(&gzip(&net.encode_to_vec())).unwrap_err();
        assert!(error.to_string().contains(message), "{name}: {error}");
    }
    assert!(from_protobuf_bytes(&original.encode_to_vec()).is_ok());
}
