//! `pilotctl`: the Pilot Protocol daemon and command-line client. See `docs/CLI.md`.

fn main() {
    std::process::exit(pilot_tokio::cli::main());
}
