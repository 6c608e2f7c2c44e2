//! Compiles `orchestra/agent/v1/agent.proto` with protox (a Rust protobuf compiler), so no
//! system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "orchestra/agent/v1/agent.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["."])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
