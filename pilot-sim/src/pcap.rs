//! Packet captures in the classic libpcap format, readable by Wireshark and tcpdump.
//!
//! A [`Capture`] keeps the raw IPv4 packets seen at one point (a host's interface or a NAT's
//! public side) with their virtual timestamps, and writes them out on demand. The link type is
//! `LINKTYPE_RAW` (101): each record is a bare IPv4 packet. Timestamps are nanoseconds since the
//! simulation epoch, offset by [`PCAP_TIME_BASE`] so that tools show a plausible date.
//!
//! A capture keeps the most recent [`CAPTURE_LIMIT`] packets, so that a long run cannot exhaust
//! memory; the failure at the end of a run is what a reader needs.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::time::Duration;

/// Seconds added to every timestamp (2026-01-01T00:00:00Z).
pub const PCAP_TIME_BASE: u64 = 1_767_225_600;

/// The most packets one capture point keeps; older ones are discarded first.
pub const CAPTURE_LIMIT: usize = 200_000;

/// The magic number of a nanosecond-resolution pcap file.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

/// Raw IP packets, no link-layer header.
const LINKTYPE_RAW: u32 = 101;

/// The largest packet a record holds.
const SNAPLEN: u32 = 65_535;

/// The packets seen at one capture point.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    packets: VecDeque<(Duration, Vec<u8>)>,
    discarded: u64,
}

impl Capture {
    /// Adds one packet seen at `at` (virtual time since the epoch).
    pub(crate) fn push(&mut self, at: Duration, bytes: &[u8]) {
        if self.packets.len() >= CAPTURE_LIMIT {
            self.packets.pop_front();
            self.discarded += 1;
        }
        self.packets.push_back((at, bytes.to_vec()));
    }

    /// Returns the captured packets with their timestamps, oldest first.
    pub fn packets(&self) -> impl Iterator<Item = &(Duration, Vec<u8>)> {
        self.packets.iter()
    }

    /// Returns how many early packets were discarded to stay within [`CAPTURE_LIMIT`].
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Writes the capture as a pcap file.
    ///
    /// # Errors
    ///
    /// Returns any error of the writer.
    pub fn write_pcap(&self, out: &mut impl Write) -> io::Result<()> {
        write_global_header(out)?;
        for (at, bytes) in &self.packets {
            write_record(out, *at, bytes)?;
        }
        Ok(())
    }
}

fn write_global_header(out: &mut impl Write) -> io::Result<()> {
    let mut header = [0u8; 24];
    header[0..4].copy_from_slice(&MAGIC_NANOS.to_le_bytes());
    header[4..6].copy_from_slice(&2u16.to_le_bytes());
    header[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay zero.
    header[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    header[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
    out.write_all(&header)
}

fn write_record(out: &mut impl Write, at: Duration, bytes: &[u8]) -> io::Result<()> {
    let seconds = PCAP_TIME_BASE + at.as_secs();
    let original_len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let kept = &bytes[..bytes.len().min(SNAPLEN as usize)];

    let mut header = [0u8; 16];
    header[0..4].copy_from_slice(&u32::try_from(seconds).unwrap_or(u32::MAX).to_le_bytes());
    header[4..8].copy_from_slice(&at.subsec_nanos().to_le_bytes());
    header[8..12].copy_from_slice(&(kept.len() as u32).to_le_bytes());
    header[12..16].copy_from_slice(&original_len.to_le_bytes());
    out.write_all(&header)?;
    out.write_all(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_headers_and_records() {
        let mut capture = Capture::default();
        capture.push(Duration::new(3, 500), &[0x45, 0, 0, 20]);
        let mut out = Vec::new();
        capture.write_pcap(&mut out).unwrap();
        assert_eq!(out.len(), 24 + 16 + 4);
        assert_eq!(&out[0..4], &MAGIC_NANOS.to_le_bytes());
        assert_eq!(&out[20..24], &101u32.to_le_bytes());
        let seconds = u32::from_le_bytes(out[24..28].try_into().unwrap());
        assert_eq!(u64::from(seconds), PCAP_TIME_BASE + 3);
        assert_eq!(u32::from_le_bytes(out[28..32].try_into().unwrap()), 500);
        assert_eq!(&out[40..], &[0x45, 0, 0, 20]);
    }
}
