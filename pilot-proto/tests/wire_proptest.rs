//! Property tests for the wire formats owned by `wire::{addr, packet, sack, dataexchange, ipc}`:
//! `parse(emit(x)) == x`, re-emitting any accepted bytes gives those bytes back, and arbitrary
//! bytes never panic a parser.

use pilot_proto::wire::addr::{Addr, AddrPort};
use pilot_proto::wire::packet::{Flags, Packet, PacketRepr, Protocol};
use pilot_proto::wire::sack::{Sack, SackBlock, SackRepr};
use proptest::prelude::*;

fn any_addr() -> impl Strategy<Value = Addr> {
    (any::<u16>(), any::<u32>()).prop_map(|(n, d)| Addr::new(n, d))
}

fn any_packet() -> impl Strategy<Value = (PacketRepr<'static>, Vec<u8>)> {
    let header = (
        0u8..16,
        any::<u8>(),
        any::<u8>(),
        any_addr(),
        any_addr(),
        any::<(u16, u16, u32, u32, u16)>(),
    );
    (header, proptest::collection::vec(any::<u8>(), 0..1500)).prop_map(|(h, payload)| {
        let (version, flags, protocol, src, dst, (src_port, dst_port, seq, ack, window)) = h;
        let repr = PacketRepr {
            version,
            flags: Flags::from_bits_truncate(flags),
            protocol: Protocol::from(protocol),
            src,
            dst,
            src_port,
            dst_port,
            seq,
            ack,
            window,
            payload: &[],
        };
        (repr, payload)
    })
}

proptest! {
    #[test]
    fn addr_text_round_trips(a in any_addr(), port: u16) {
        prop_assert_eq!(a.to_string().parse::<Addr>(), Ok(a));
        let sa = AddrPort::new(a, port);
        prop_assert_eq!(sa.to_string().parse::<AddrPort>(), Ok(sa));
        prop_assert_eq!(Addr::from_bytes(a.to_bytes()), a);
        prop_assert_eq!(AddrPort::from_bytes(sa.to_bytes()), sa);
    }

    #[test]
    fn addr_text_never_panics(s in "\\PC{0,40}", t in "[0-9a-fA-F:.+ -]{0,30}") {
        let _ = s.parse::<Addr>();
        let _ = s.parse::<AddrPort>();
        let _ = t.parse::<Addr>();
        let _ = t.parse::<AddrPort>();
    }

    #[test]
    fn addr_text_accepts_only_canonical_up_to_case_and_zeros(s in "[0-9]{1,6}:[0-9a-fA-F]{4}\\.[0-9a-fA-F]{4}\\.[0-9a-fA-F]{4}") {
        if let Ok(a) = s.parse::<Addr>() {
            let text = a.to_string();
            let (net, groups) = s.split_once(':').unwrap();
            prop_assert_eq!(net.parse::<u32>().unwrap(), u32::from(a.network));
            prop_assert_eq!(groups.to_uppercase(), text.split_once(':').unwrap().1);
        }
    }

    #[test]
    fn packet_round_trips((repr, payload) in any_packet()) {
        let repr = PacketRepr { payload: &payload, ..repr };
        let mut buf = vec![0xa5; repr.buffer_len() + 3];
        let n = repr.emit(&mut buf).unwrap();
        prop_assert_eq!(n, repr.buffer_len());
        prop_assert_eq!(PacketRepr::decode(&buf[..n]), Ok(repr));
        // Trailing bytes are outside the packet and ignored.
        prop_assert_eq!(PacketRepr::decode(&buf), Ok(repr));
    }

    #[test]
    fn packet_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = PacketRepr::decode(&bytes);
        if let Ok(p) = Packet::new_unverified(&bytes[..]) {
            let _ = (p.version(), p.flags(), p.protocol(), p.src_addr(), p.dst_addr());
            let _ = (p.seq(), p.ack(), p.window(), p.payload(), p.compute_checksum());
            let _ = PacketRepr::parse(&p);
        }
    }

    #[test]
    fn accepted_packet_bytes_re_emit_identically(mut bytes in proptest::collection::vec(any::<u8>(), 34..300), cut: u16) {
        let room = bytes.len() - 34;
        let len = usize::from(cut) % (room + 1);
        bytes[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        Packet::new_unverified(&mut bytes[..]).unwrap().fill_checksum();

        let repr = PacketRepr::decode(&bytes).unwrap();
        let mut out = vec![0; repr.buffer_len()];
        repr.emit(&mut out).unwrap();
        prop_assert_eq!(&out[..], &bytes[..34 + len]);
    }

    #[test]
    fn sack_round_trips(blocks in proptest::collection::vec(any::<(u32, u32)>(), 1..=4)) {
        let blocks: Vec<_> = blocks.into_iter().map(|(l, r)| SackBlock::new(l, r)).collect();
        let repr = SackRepr::new(&blocks);
        let mut buf = vec![0; repr.buffer_len()];
        repr.emit(&mut buf).unwrap();
        prop_assert_eq!(SackRepr::decode(&buf), Ok(repr));
        prop_assert_eq!(repr.blocks(), &blocks[..]);
    }

    #[test]
    fn sack_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..60), magic: bool) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(b"SACK");
        }
        if let Ok(view) = Sack::new_checked(&bytes[..]) {
            let repr = SackRepr::parse(&view);
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut out).unwrap();
            prop_assert_eq!(&out[..], &bytes[..view.len()]);
        }
    }
}
