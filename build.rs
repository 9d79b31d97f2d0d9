//! Compiles the protobuf record. The C header is generated separately
//! (`make header`), so a plain `cargo build` never rewrites checked-in files.

fn main() {
    println!("cargo:rerun-if-changed=proto/os_lively/service.proto");
    if let Err(e) = prost_build::compile_protos(&["proto/os_lively/service.proto"], &["proto/"]) {
        panic!(
            "compiling proto/os_lively/service.proto failed (is protoc installed? `apt-get install protobuf-compiler`): {e}"
        );
    }
}
