//! Records the target triple the agent is built for, so that `tether-agent --version` can say
//! which binary a device runs (x86-64 musl, aarch64 musl, armv7 glibc...).

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=TETHER_AGENT_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
