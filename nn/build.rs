//! Compiles the KServe v2 protocol subset (`proto/kserve_v2.proto`) into the Triton client's
//! messages and gRPC stub, with protox (no `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/kserve_v2.proto";
    // Cargo's build-script protocol (read by cargo, never the UCI channel).
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
