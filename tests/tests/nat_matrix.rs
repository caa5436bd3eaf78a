//! The NAT matrix through `pilot-sim`: every pair of network kinds reaches its expected route
//! with an established stream, for many seeds per cell with 0-5 % loss on every link.
//!
//! The expectation table, symmetric in the two sides (`pilot_tests::matrix::expected`):
//!
//! | pair | route |
//! |---|---|
//! | both on the same LAN behind one NAT (hairpin or not) | local |
//! | either side UDP-blocked | relay |
//! | symmetric × (port-restricted, LAN, symmetric) | relay (no port prediction) |
//! | everything else | direct (punched when needed) |
//!
//! One test per dialling kind, so rows run in parallel. Seeds per cell: `PILOT_MATRIX_SEEDS`
//! (default 200). A failing run prints its seed and the command that reruns it
//! (`PILOT_SIM_SEED=...` runs only that seed, for every cell of the row).
//! `cargo run -p pilot-tests --example nat_matrix` prints the same runs as a table.

use pilot_sim::Scenario;
use pilot_tests::matrix::{KINDS, NatKind, base_seed, build_cell, expected, loss_for, run_sim};

fn seeds_per_cell() -> u64 {
    std::env::var("PILOT_MATRIX_SEEDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(200)
}

/// Runs every cell (row, b) with b at or after `row` in table order.
fn row(name: &str, row: NatKind) {
    let start = KINDS.iter().position(|k| *k == row).unwrap_or(0);
    for &b in &KINDS[start..] {
        let want = expected(row, b);
        Scenario::new(name)
            .seed(base_seed(row, b))
            .without_capture()
            .run_many(
                seeds_per_cell(),
                |seed| build_cell(seed, row, b, loss_for(seed)).sim,
                |sim| {
                    let outcome = run_sim(sim, want);
                    assert!(
                        outcome.reached(want),
                        "{} x {}: expected {}, got {outcome}",
                        row.name(),
                        b.name(),
                        want.label()
                    );
                },
            );
    }
}

#[test]
fn matrix_public() {
    row("matrix_public", NatKind::Public);
}

#[test]
fn matrix_full_cone() {
    row("matrix_full_cone", NatKind::FullCone);
}

#[test]
fn matrix_restricted() {
    row("matrix_restricted", NatKind::Restricted);
}

#[test]
fn matrix_port_restricted() {
    row("matrix_port_restricted", NatKind::PortRestricted);
}

#[test]
fn matrix_symmetric_sequential() {
    row("matrix_symmetric_sequential", NatKind::SymmetricSequential);
}

#[test]
fn matrix_symmetric_random() {
    row("matrix_symmetric_random", NatKind::SymmetricRandom);
}

#[test]
fn matrix_lan_hairpin() {
    row("matrix_lan_hairpin", NatKind::LanHairpin);
}

#[test]
fn matrix_lan_no_hairpin() {
    row("matrix_lan_no_hairpin", NatKind::LanNoHairpin);
}

#[test]
fn matrix_udp_blocked() {
    row("matrix_udp_blocked", NatKind::UdpBlocked);
}
