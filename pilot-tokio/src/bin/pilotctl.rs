//! `pilotctl`: the Pilot Protocol daemon and command-line client.

fn main() {
    println!("pilotctl: not built yet");
}
