//! Generates Rust code for our .proto files with protox (a pure-Rust protobuf compiler), so
//! no machine needs `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/eraftpb.proto",
        "proto/metapb.proto",
        "proto/errorpb.proto",
        "proto/kvrpcpb.proto",
        "proto/raft_serverpb.proto",
        "proto/raft_cmdpb.proto",
        "proto/pdpb.proto",
        "proto/keyspacepb.proto",
        "proto/tikvpb.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
