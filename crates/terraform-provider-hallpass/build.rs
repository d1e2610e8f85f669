//! Generates the gRPC server code from the provider's own protocol
//! definitions in `proto/`. protox parses them in Rust, so building needs
//! no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const FILES: [&str; 2] = ["proto/tfplugin6.proto", "proto/go_plugin.proto"];
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(FILES, ["proto"])?;
    // Server side only: Terraform is the client.
    tonic_prost_build::configure()
        .build_client(false)
        .compile_fds(descriptors)?;
    Ok(())
}
