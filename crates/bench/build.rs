//! Compiles our etcd KV `.proto` with protox (pure Rust), so no machine needs `protoc`. The
//! server side is generated too, only so the tests can stand up a stand-in etcd in process.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/etcd_kv.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
