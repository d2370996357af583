use banyan_nn::network::Network;
use banyan_nn::encode::PositionHistory;
use std::time::Instant;
#[test]
fn speed() {
    let threads: i32 = std::env::var("T").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    tch::set_num_threads(threads);
    for net in ["maia-1900", "meangirl-8"] {
    let path = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/nets")).join(format!("{net}.pb.gz"));
    let mut network = Network::load(&path, tch::Device::Cpu).unwrap();
    let planes = PositionHistory::new(cozy_chess::Board::default()).planes();
    for b in [1usize, 8, 32, 128, 256, 512] {
        let batch = vec![planes; b];
        let input = network.input_tensor(batch.iter());
        let _ = network.forward(&input);
        let reps = (2048 / b).max(3);
        let t = Instant::now();
        for _ in 0..reps { let (p, w) = network.forward(&input); let _ = (p.double_value(&[0,0]), w.double_value(&[0,0])); }
        let fwd = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..reps { let _ = network.input_tensor(batch.iter()); }
        let enc = t.elapsed().as_secs_f64();
        eprintln!("{net} threads {threads} batch {b}: {:.0} pos/s bare forward, input build {:.1} us/pos", (b*reps) as f64 / fwd, enc*1e6/(b*reps) as f64);
    }
    }
}
