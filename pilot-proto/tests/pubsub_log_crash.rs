//! Crash safety of the retained log on a real file.
//!
//! Each trial plays the daemon's part: append records, fsync, count them acknowledged, then
//! "crash" while writing more (a torn record, garbage or zeros after it, unsynced whole records)
//! and reopen. Recovery must return every acknowledged record, then only intact records that
//! were really written, and the file must accept appends after truncation to the valid prefix.
//! A second test flips bits anywhere and checks that nothing corrupt is ever returned.
//!
//! Seeds are printed; rerun one with `PUBSUB_CRASH_SEED=<n>`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use pilot_proto::pubsub::log::{self, LogRecord};
use pilot_proto::pubsub::{Seq, Topic};

const TRIALS: u64 = 120;
const TOPICS: [&str; 4] = ["sensors.temp", "jobs.created", "a", "tasks.complete.x"];

/// Deterministic generator (xorshift64*), so a failing seed replays exactly.
struct Gen(u64);

impl Gen {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn base_seed() -> u64 {
    std::env::var("PUBSUB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pilot-{name}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn random_record(generator: &mut Gen, seq: u64) -> LogRecord {
    let topic = Topic::parse(TOPICS[generator.below(TOPICS.len())]).unwrap();
    let len = generator.below(300);
    LogRecord {
        seq: Seq(seq),
        topic,
        payload: generator.bytes(len).into(),
    }
}

fn encode(record: &LogRecord) -> Vec<u8> {
    let mut out = Vec::new();
    log::encode_record(record.seq, &record.topic, &record.payload, &mut out);
    out
}

/// Appends records and fsyncs, as the driver does before acknowledging them.
fn append_synced(path: &Path, records: &[LogRecord]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for record in records {
        file.write_all(&encode(record)).unwrap();
    }
    file.sync_data().unwrap();
}

/// Writes what a crash can leave after the synced prefix.
fn crash_tail(path: &Path, generator: &mut Gen, unsynced: &[LogRecord]) {
    let mut tail = Vec::new();
    let whole = generator.below(unsynced.len() + 1);
    for record in &unsynced[..whole] {
        tail.extend_from_slice(&encode(record));
    }
    if let Some(torn) = unsynced.get(whole) {
        let bytes = encode(torn);
        tail.extend_from_slice(&bytes[..generator.below(bytes.len())]);
    }
    match generator.below(3) {
        0 => {}
        1 => tail.extend(std::iter::repeat_n(0, generator.below(64))),
        _ => {
            let len = generator.below(64);
            tail.extend(generator.bytes(len));
        }
    }
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(&tail).unwrap();
}

fn run_crash_trial(dir: &Path, seed: u64) {
    let mut generator = Gen::new(seed);
    let path = dir.join(format!("events-{seed}.log"));
    let _ = fs::remove_file(&path);
    fs::write(&path, log::FILE_HEADER).unwrap();

    // Acknowledged: appended in a few synced batches.
    let mut acked = Vec::new();
    let mut seq = 1 + generator.below(1_000) as u64;
    for _ in 0..1 + generator.below(4) {
        let batch: Vec<LogRecord> = (0..generator.below(8))
            .map(|_| {
                seq += 1 + generator.below(3) as u64;
                random_record(&mut generator, seq)
            })
            .collect();
        append_synced(&path, &batch);
        acked.extend(batch);
    }

    // Written but never synced when the process died.
    let unsynced: Vec<LogRecord> = (0..generator.below(4))
        .map(|_| {
            seq += 1;
            random_record(&mut generator, seq)
        })
        .collect();
    crash_tail(&path, &mut generator, &unsynced);

    // Reopen.
    let bytes = fs::read(&path).unwrap();
    let recovery = log::recover(&bytes).unwrap();
    let (found_acked, extra) = recovery
        .records
        .split_at(acked.len().min(recovery.records.len()));
    assert_eq!(
        found_acked,
        &acked[..],
        "seed {seed}: an acknowledged record was lost"
    );
    assert!(
        extra.len() <= unsynced.len(),
        "seed {seed}: records that were never written"
    );
    assert_eq!(
        extra,
        &unsynced[..extra.len()],
        "seed {seed}: a corrupt record was returned"
    );
    assert_eq!(recovery.valid_len + recovery.discarded, bytes.len());

    // The driver truncates to the valid prefix and carries on appending.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(recovery.valid_len as u64).unwrap();
    drop(file);
    let after = random_record(&mut generator, seq + 10);
    append_synced(&path, std::slice::from_ref(&after));
    let reopened = log::recover(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(reopened.discarded, 0, "seed {seed}: truncated log is clean");
    assert_eq!(
        reopened.records.last(),
        Some(&after),
        "seed {seed}: append after recovery"
    );
    assert_eq!(reopened.records.len(), recovery.records.len() + 1);
    fs::remove_file(&path).unwrap();
}

#[test]
fn crash_at_random_points_loses_no_acknowledged_record() {
    let dir = scratch_dir("log-crash");
    let base = base_seed();
    println!("log crash trials: base seed {base} (PUBSUB_CRASH_SEED), {TRIALS} trials");
    for trial in 0..TRIALS {
        run_crash_trial(&dir, base.wrapping_add(trial));
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damage_anywhere_never_returns_a_corrupt_record() {
    let dir = scratch_dir("log-damage");
    let base = base_seed();
    println!("log damage trials: base seed {base} (PUBSUB_CRASH_SEED), {TRIALS} trials");
    for trial in 0..TRIALS {
        let seed = base.wrapping_add(trial);
        let mut generator = Gen::new(seed);
        let records: Vec<LogRecord> = (1..=20)
            .map(|seq| random_record(&mut generator, seq))
            .collect();
        let path = dir.join(format!("damaged-{seed}.log"));
        fs::write(&path, log::encode_log(&records)).unwrap();

        // Flip a bit in one to three distinct bytes, anywhere after the header.
        let mut bytes = fs::read(&path).unwrap();
        let body = bytes.len() - log::FILE_HEADER.len();
        let spots: std::collections::BTreeSet<usize> = (0..1 + generator.below(3))
            .map(|_| log::FILE_HEADER.len() + generator.below(body))
            .collect();
        for at in spots {
            bytes[at] ^= 1 << generator.below(8);
        }
        fs::write(&path, &bytes).unwrap();

        let recovery = log::recover(&fs::read(&path).unwrap()).unwrap();
        let count = recovery.records.len();
        assert!(count < records.len(), "seed {seed}: damage went unnoticed");
        assert_eq!(
            recovery.records,
            records[..count],
            "seed {seed}: corrupt record returned"
        );
        fs::remove_file(&path).unwrap();
    }
    fs::remove_dir_all(&dir).unwrap();
}
