//! Property tests for the wire formats owned by `wire::{addr, packet, sack, dataexchange, ipc}`:
//! `parse(emit(x)) == x`, re-emitting any accepted bytes gives those bytes back, and arbitrary
//! bytes never panic a parser.

use pilot_proto::wire::addr::{Addr, AddrPort};
use pilot_proto::wire::dataexchange::{DataFrameRepr, DataType};
use pilot_proto::wire::ipc::{HandshakeCmd, IpcMessage};
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

/// Numbers a test can pick from to build any message.
#[derive(Debug, Clone)]
struct Pick {
    which: u8,
    port: u16,
    id: u32,
    to: AddrPort,
    byte: u8,
    data: Vec<u8>,
}

fn any_pick() -> impl Strategy<Value = Pick> {
    let fields = (
        any::<u8>(),
        any::<u16>(),
        any::<u32>(),
        any_addr(),
        any::<(u16, u8)>(),
    );
    (fields, proptest::collection::vec(any::<u8>(), 0..300)).prop_map(|(f, data)| Pick {
        which: f.0,
        port: f.1,
        id: f.2,
        to: AddrPort::new(f.3, f.4.0),
        byte: f.4.1,
        data,
    })
}

fn handshake(p: &Pick) -> HandshakeCmd<'_> {
    let (node, text) = (p.id, &p.data[..]);
    match p.byte % 8 {
        0 => HandshakeCmd::Request {
            node,
            justification: text,
        },
        1 => HandshakeCmd::Approve { node },
        2 => HandshakeCmd::Reject { node, reason: text },
        3 => HandshakeCmd::Pending,
        4 => HandshakeCmd::Trusted,
        5 => HandshakeCmd::Revoke { node },
        _ => HandshakeCmd::Unknown {
            sub: p.byte | 0x80,
            args: text,
        },
    }
}

/// Builds one of every IPC message shape from `p`.
fn ipc_message(p: &Pick) -> IpcMessage<'_> {
    let (port, conn_id, dst, value, data) = (p.port, p.id, p.to, p.byte, &p.data[..]);
    match p.which % 32 {
        0 => IpcMessage::Bind { port },
        1 => IpcMessage::BindOk { port },
        2 => IpcMessage::Dial { dst },
        3 => IpcMessage::DialOk { conn_id },
        4 => IpcMessage::Accept {
            local_port: port,
            conn_id,
            remote: dst,
        },
        5 => IpcMessage::Send { conn_id, data },
        6 => IpcMessage::Recv { conn_id, data },
        7 => IpcMessage::Close { conn_id },
        8 => IpcMessage::CloseOk { conn_id },
        9 => IpcMessage::Error {
            code: port,
            message: data,
        },
        10 => IpcMessage::SendTo { dst, data },
        11 => IpcMessage::RecvFrom {
            src: dst,
            dst_port: port,
            data,
        },
        12 => IpcMessage::Info,
        13 => IpcMessage::InfoOk { json: data },
        14 => IpcMessage::Handshake(handshake(p)),
        15 => IpcMessage::HandshakeOk { json: data },
        16 => IpcMessage::ResolveHostname { hostname: data },
        17 => IpcMessage::ResolveHostnameOk { json: data },
        18 => IpcMessage::SetHostname { hostname: data },
        19 => IpcMessage::SetHostnameOk { json: data },
        20 => IpcMessage::SetVisibility { value },
        21 => IpcMessage::SetVisibilityOk { json: data },
        22 => IpcMessage::Deregister,
        23 => IpcMessage::DeregisterOk { json: data },
        24 => IpcMessage::SetTags { json: data },
        25 => IpcMessage::SetTagsOk { json: data },
        26 => IpcMessage::SetWebhook { url: data },
        27 => IpcMessage::SetWebhookOk { json: data },
        28 => IpcMessage::SetTaskExec { value },
        29 => IpcMessage::SetTaskExecOk { json: data },
        _ => IpcMessage::Unknown {
            cmd: 0x1F + (value % 0xE0),
            payload: data,
        },
    }
}

fn data_frame(p: &Pick) -> DataFrameRepr<'_> {
    let data_type = DataType::from(u32::from(p.which % 6));
    let split = usize::from(p.port) % (p.data.len() + 1);
    let (name, rest) = p.data.split_at(split);
    let filename = (data_type == DataType::File).then_some(name);
    DataFrameRepr {
        data_type,
        filename,
        payload: rest,
    }
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
    fn addr_text_accepts_case_and_leading_zeros(a in any_addr(), zeros in 0usize..4, lower: bool) {
        let text = format!("{}{}", "0".repeat(zeros), a);
        let text = if lower { text.to_lowercase() } else { text };
        prop_assert_eq!(text.parse::<Addr>(), Ok(a));
    }

    #[test]
    fn addr_text_rejects_a_network_mismatch(a in any_addr(), other: u16) {
        prop_assume!(other != a.network);
        let text = a.to_string();
        let (_, groups) = text.split_once(':').unwrap();
        let (_, node) = groups.split_once('.').unwrap();
        let bad = format!("{}:{other:04X}.{node}", a.network);
        prop_assert!(bad.parse::<Addr>().is_err(), "{} parsed", bad);
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
    fn accepted_packet_bytes_re_emit_identically(
        mut bytes in proptest::collection::vec(any::<u8>(), 34..300),
        cut: u16,
    ) {
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

    #[test]
    fn ipc_round_trips(p in any_pick()) {
        let msg = ipc_message(&p);
        let mut buf = vec![0xa5; msg.buffer_len() + 2];
        let n = msg.emit(&mut buf).unwrap();
        prop_assert_eq!(IpcMessage::decode(&buf[..n]), Ok(msg));
        prop_assert_eq!(IpcMessage::decode(&buf), Ok(msg));
    }

    #[test]
    fn ipc_accepted_bytes_re_emit_identically(
        cmd in 0u8..0x24,
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut frame = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        frame.push(cmd);
        frame.extend_from_slice(&payload);
        if let Ok(msg) = IpcMessage::decode(&frame) {
            let mut out = vec![0; msg.buffer_len()];
            msg.emit(&mut out).unwrap();
            prop_assert_eq!(out, frame);
        }
    }

    #[test]
    fn ipc_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = IpcMessage::decode(&bytes);
        let _ = IpcMessage::parse_body(&bytes);
    }

    #[test]
    fn data_exchange_round_trips(p in any_pick()) {
        let repr = data_frame(&p);
        let mut buf = vec![0xa5; repr.buffer_len() + 5];
        let n = repr.emit(&mut buf).unwrap();
        prop_assert_eq!(DataFrameRepr::decode(&buf[..n]), Ok(repr));
        prop_assert_eq!(DataFrameRepr::decode(&buf), Ok(repr));
    }

    #[test]
    fn data_exchange_accepted_bytes_re_emit(
        ty in 0u32..6,
        body in proptest::collection::vec(any::<u8>(), 0..40),
        declared in 0u32..48,
    ) {
        let mut frame = ty.to_be_bytes().to_vec();
        frame.extend_from_slice(&declared.to_be_bytes());
        frame.extend_from_slice(&body);
        if let Ok(repr) = DataFrameRepr::decode(&frame) {
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut out).unwrap();
            prop_assert_eq!(&out[..], &frame[..8 + declared as usize]);
        }
    }

    #[test]
    fn data_exchange_arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = DataFrameRepr::decode(&bytes);
        let _ = pilot_proto::wire::dataexchange::frame_len(&bytes);
    }
}
