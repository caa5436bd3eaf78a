//! `pilotctl --help` and `--version` work (this test also makes `cargo test --workspace` build
//! the binary that the process tests in `tests/` run).

use std::process::Command;

#[test]
fn help_and_version_exit_zero() {
    let bin = env!("CARGO_BIN_EXE_pilotctl");
    let help = Command::new(bin).arg("--help").output().expect("run");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("subscribe"));
    let version = Command::new(bin).arg("--version").output().expect("run");
    assert!(version.status.success());
}
