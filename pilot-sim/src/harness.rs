//! A test harness that makes every failing simulation reproducible.
//!
//! [`Scenario::run`] picks the seed (from `PILOT_SIM_SEED`, else a default derived from the
//! scenario's name), builds the simulation, turns on capture and trace recording, and runs the
//! checks. If they panic it writes one pcap per host and NAT plus a `timeline.txt` to
//! `target/sim-pcap/<name>/`, prints the seed and the command that reruns the scenario, and
//! re-raises the panic so the test still fails.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;

use crate::seed::{SEED_ENV, derive_seed, fnv1a, seed_from_env};
use crate::sim::Sim;

/// A named, seeded simulation test.
#[derive(Debug, Clone)]
pub struct Scenario {
    name: String,
    seed: u64,
    capture: bool,
}

impl Scenario {
    /// Names a scenario; its seed is `PILOT_SIM_SEED` if set, else a hash of the name.
    pub fn new(name: &str) -> Self {
        let seed = seed_from_env(fnv1a(name.as_bytes()));
        Self {
            name: name.to_owned(),
            seed,
            capture: true,
        }
    }

    /// Uses `seed` unless `PILOT_SIM_SEED` overrides it.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed_from_env(seed);
        self
    }

    /// Turns packet capture off, for scenarios too large to keep every packet.
    pub fn without_capture(mut self) -> Self {
        self.capture = false;
        self
    }

    /// Returns the seed the scenario runs with.
    pub fn current_seed(&self) -> u64 {
        self.seed
    }

    /// Builds the simulation with `build(seed)` and runs `check` on it. On a panic, writes
    /// the captures and timeline, prints how to reproduce, and re-raises the panic.
    pub fn run<B, C>(&self, build: B, check: C)
    where
        B: FnOnce(u64) -> Sim,
        C: FnOnce(&mut Sim),
    {
        let built = catch_unwind(AssertUnwindSafe(|| build(self.seed)));
        let mut sim = match built {
            Ok(sim) => sim,
            Err(panic) => {
                self.report(None);
                resume_unwind(panic);
            }
        };
        sim.set_capture(self.capture);
        sim.set_record_trace(true);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&mut sim))) {
            self.report(Some(&sim));
            resume_unwind(panic);
        }
    }

    /// Runs the scenario once per seed for `count` seeds derived from the scenario's seed, or
    /// only for `PILOT_SIM_SEED` when it is set (so the printed rerun command reruns exactly
    /// the failing seed). Stops at the first failure, reporting it like [`Scenario::run`].
    pub fn run_many<B, C>(&self, count: u64, build: B, check: C)
    where
        B: Fn(u64) -> Sim,
        C: Fn(&mut Sim),
    {
        if std::env::var_os(SEED_ENV).is_some() {
            return self.run(&build, &check);
        }
        for index in 0..count {
            let seed = u64::from_le_bytes(
                derive_seed(self.seed, "sweep", index)[..8]
                    .try_into()
                    .unwrap_or_default(),
            );
            let single = Self {
                seed,
                ..self.clone()
            };
            single.run(&build, &check);
        }
    }

    /// Returns the directory failure artefacts go to: `target/sim-pcap/<name>/`.
    pub fn artifact_dir(&self) -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        target.join("sim-pcap").join(name)
    }

    fn report(&self, sim: Option<&Sim>) {
        let package = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "pilot-sim".to_owned());
        eprintln!(
            "\n=== simulation scenario `{}` failed with seed {:#x}",
            self.name, self.seed
        );
        eprintln!(
            "=== rerun: {SEED_ENV}={:#x} cargo test -p {package} {}",
            self.seed, self.name
        );
        let Some(sim) = sim else { return };
        eprintln!(
            "=== at virtual time {:?}, stats {:?}",
            sim.elapsed(),
            sim.stats()
        );
        let dir = self.artifact_dir();
        match sim.write_pcaps(&dir) {
            Ok(files) => eprintln!("=== wrote {} pcap files to {}", files.len(), dir.display()),
            Err(error) => eprintln!("=== could not write pcaps to {}: {error}", dir.display()),
        }
        let timeline = dir.join("timeline.txt");
        if std::fs::write(&timeline, sim.timeline()).is_ok() {
            eprintln!("=== timeline: {}", timeline.display());
        }
    }
}
