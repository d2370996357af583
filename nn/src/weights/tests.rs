//! Loader tests: the real nets, and every kind of bad file.

use std::io::Write;

use prost::Message;

use super::*;

fn net_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/nets")).join(name)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The decoded `Net` message of a real file, for tampering.
fn maia_message() -> proto::Net {
    let compressed = std::fs::read(net_path("maia-1900.pb.gz")).unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut bytes)
        .unwrap();
    proto::Net::decode(&bytes[..]).unwrap()
}

#[test]
fn loads_the_test_nets() {
    let cases = [
        ("maia-1900.pb.gz", "6x64 SE, conv policy, WDL", 8),
        ("maia-1100.pb.gz", "6x64 SE, conv policy, WDL", 8),
        (
            "meangirl-8.pb.gz",
            "4x32 SE, conv policy, classical value",
            16,
        ),
    ];
    for (file, description, se_width) in cases {
        let net = load(&net_path(file)).unwrap();
        assert_eq!(net.describe(), description, "{file}");
        assert_eq!(
            net.residual[0].se.as_ref().unwrap().fc1.outputs,
            se_width,
            "{file}"
        );
        assert_eq!(net.activation, Activation::Relu);
    }
}

#[test]
fn bad_files_are_clear_errors() {
    let good = std::fs::read(net_path("meangirl-8.pb.gz")).unwrap();
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
            "layer residual[1].conv1.weights has 50 values, expected 36864",
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
    let original = maia_message();
    for (name, tamper, message) in cases {
        let mut net = original.clone();
        tamper(&mut net);
        let error = from_gzip_bytes(&gzip(&net.encode_to_vec())).unwrap_err();
        assert!(error.to_string().contains(message), "{name}: {error}");
    }
    assert!(from_protobuf_bytes(&original.encode_to_vec()).is_ok());
}
