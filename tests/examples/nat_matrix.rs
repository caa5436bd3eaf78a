//! Prints the NAT matrix as a markdown table: for every pair of network kinds, the route the
//! agent reached and the median simulated time from the dial to an established stream.
//!
//! ```text
//! cargo run -p pilot-tests --example nat_matrix -- [--seeds N] [--only KIND]
//! ```
//!
//! Each cell runs `N` seeds (default 200) with 0-5 % loss on every link. A cell shows the
//! expected route when every seed reached it, and `FAIL k/N` otherwise.

use std::time::Duration;

use pilot_tests::matrix::{KINDS, NatKind, build_cell, expected, loss_for, run_cell, run_seed};

struct Args {
    seeds: u64,
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        seeds: 200,
        only: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--seeds" => {
                args.seeds = iter.next().and_then(|n| n.parse().ok()).unwrap_or(200);
            }
            "--only" => args.only = iter.next(),
            _ => eprintln!("ignoring unknown argument {arg}"),
        }
    }
    args
}

struct CellReport {
    passed: u64,
    failures: Vec<(u64, String)>,
    connect: Vec<Duration>,
}

fn run(a: NatKind, b: NatKind, seeds: u64) -> CellReport {
    let want = expected(a, b);
    let mut report = CellReport {
        passed: 0,
        failures: Vec::new(),
        connect: Vec::new(),
    };
    for index in 0..seeds {
        let seed = run_seed(a, b, index);
        let mut cell = build_cell(seed, a, b, loss_for(seed));
        let outcome = run_cell(&mut cell, want);
        if outcome.reached(want) {
            report.passed += 1;
            report.connect.extend(outcome.connect);
        } else {
            report.failures.push((seed, outcome.to_string()));
        }
    }
    report
}

fn median(values: &mut [Duration]) -> Option<Duration> {
    values.sort();
    values.get(values.len() / 2).copied()
}

fn main() {
    let args = parse_args();
    println!("# NAT matrix\n");
    println!(
        "Route reached and median simulated time from dial to established stream, {} seeds \
         per cell, 0-5 % loss per link. Rows dial columns.\n",
        args.seeds
    );
    let header: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
    println!("| dialler \\ dialled | {} |", header.join(" | "));
    println!("|---|{}", "---|".repeat(KINDS.len()));
    let mut all_failures = Vec::new();
    for (i, &a) in KINDS.iter().enumerate() {
        let mut row = Vec::new();
        for &b in &KINDS[..] {
            let wanted = args
                .only
                .as_deref()
                .is_none_or(|o| a.name() == o || b.name() == o);
            if KINDS.iter().position(|k| *k == b) < Some(i) || !wanted {
                row.push(String::from(" "));
                continue;
            }
            let mut report = run(a, b, args.seeds);
            let label = expected(a, b).label();
            let cell = match median(&mut report.connect) {
                _ if report.passed < args.seeds => {
                    format!("FAIL {}/{} ({label})", report.passed, args.seeds)
                }
                Some(m) => format!("{label} {:.2} s", m.as_secs_f64()),
                None => label.to_owned(),
            };
            all_failures.extend(report.failures.into_iter().map(|f| (a, b, f)));
            row.push(cell);
        }
        println!("| **{}** | {} |", a.name(), row.join(" | "));
    }
    for (a, b, (seed, what)) in all_failures.iter().take(20) {
        eprintln!("failed: {} x {} seed {seed:#x}: {what}", a.name(), b.name());
    }
}
