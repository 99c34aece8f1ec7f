//! Links the bare-metal dom0 kernel with the shim's guest linker script at
//! GPA 16 MiB: dom0's GPA = HPA, and xen-core occupies 1 MiB onwards.
fn main() {
    let script = std::env::var("DEP_GUEST_PV_SHIM_LINK_SCRIPT")
        .expect("guest-pv-shim exports its linker script (links = \"guest_pv_shim\")");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{script}");
        println!("cargo:rustc-link-arg-bins=--defsym=GUEST_LOAD_GPA=0x1000000");
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
