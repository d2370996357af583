//! Triton Inference Server support through the real binary: `banyan export-triton` writes a
//! model repository whose TorchScript computes what the network computes.

use std::path::PathBuf;
use std::process::{Command, Output};

use banyan_nn::encode::PositionHistory;
use banyan_nn::network::Network;
use banyan_nn::triton::export::run_module;
use cozy_chess::Board;
use tch::{CModule, Device};

fn export(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_banyan"))
        .arg("export-triton")
        .args(args)
        .output()
        .expect("run banyan export-triton")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("banyan-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The built-in net exported under a chosen model name: the configuration and a TorchScript
/// file that, loaded back through tch, gives the built-in network's outputs.
#[test]
fn export_triton_writes_a_repository_that_computes_the_network() {
    let dir = temp_dir("export-triton");
    let out = export(&[
        "--out",
        dir.to_str().unwrap(),
        "--model",
        "net",
        "--max-batch",
        "128",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("6x64 SE"));
    let config = std::fs::read_to_string(dir.join("net/config.pbtxt")).unwrap();
    assert!(
        config.contains("name: \"net\"") && config.contains("max_batch_size: 128"),
        "{config}"
    );

    let module = CModule::load(dir.join("net/1/model.pt")).unwrap();
    let planes = [PositionHistory::new(Board::default()).planes()];
    let (policy, wdl) = run_module(&module, &planes).unwrap();
    let mut network = Network::load_builtin(Device::Cpu).unwrap();
    let input = network.input_tensor(planes.iter());
    let (expected_policy, expected_wdl) = network.forward(&input);
    let difference = |a: &tch::Tensor, b: &tch::Tensor| (a - b).abs().max().double_value(&[]);
    assert!(difference(&policy, &expected_policy) < 1e-4);
    assert!(difference(&wdl, &expected_wdl) < 1e-5);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// No network or a bad path: a clear error and a non-zero exit, nothing written.
#[test]
fn export_triton_refuses_what_it_cannot_export() {
    let dir = temp_dir("export-triton-bad");
    for (args, expected) in [
        (vec!["--weights", "<heuristic>"], "not a network"),
        (vec!["--weights", "/nonexistent/net.pb.gz"], "loading"),
        (vec!["--model", "../escape"], "not a model name"),
    ] {
        let out = export(&[args.as_slice(), &["--out", dir.to_str().unwrap()]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
    assert!(!dir.join("banyan").exists());
}
