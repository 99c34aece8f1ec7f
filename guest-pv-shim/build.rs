//! Links the example guest kernels as domUs at GPA 1 MiB, and exports the
//! linker script so other guest kernels (dom0) link with their own address.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/src/arch/guest.ld");
    println!("cargo:link_script={script}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-examples=-T{script}");
        println!("cargo:rustc-link-arg-examples=--defsym=GUEST_LOAD_GPA=0x100000");
        println!("cargo:rustc-link-arg-examples=--no-pie");
    }
    println!("cargo:rerun-if-changed=src/arch/guest.ld");
}
