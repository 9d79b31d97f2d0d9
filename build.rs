//! Compiles the protobuf record. The C header is generated separately
//! (`make header`), so a plain `cargo build` never rewrites checked-in files.

fn main() {
    println!("cargo:rerun-if-changed=proto/os_lively/service.proto");
    // The shared library (only the cdylib): an soname carrying the ABI's
    // major version, and a version script exporting only `lively_*`.
    let map = concat!(env!("CARGO_MANIFEST_DIR"), "/src/capi/os_lively.map");
    println!("cargo:rerun-if-changed=src/capi/os_lively.map");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libos_lively.so.0");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={map}");
    }
    if let Err(e) = prost_build::compile_protos(&["proto/os_lively/service.proto"], &["proto/"]) {
        panic!(
            "compiling proto/os_lively/service.proto failed (is protoc installed? `apt-get install protobuf-compiler`): {e}"
        );
    }
}
