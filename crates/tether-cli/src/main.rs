//! `tether`: the operator's command line for a Tether hub. Everything but the process exit is in
//! the library (`src/lib.rs`).

fn main() {
    tether_net::allocator::keep_freed_buffers();
    std::process::exit(tether_cli::run_from_command_line());
}
