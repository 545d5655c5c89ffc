//! `tether`: the operator's command line for a Tether hub. Everything but the process exit is in
//! the library (`src/lib.rs`).

fn main() {
    std::process::exit(tether_cli::run_from_command_line());
}
