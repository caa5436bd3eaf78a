//! Byte vectors for the IPC codec, from dataplane.md §9.2 and the captures.

use super::*;
use crate::wire::EmitError;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn round_trip(body_hex: &str, want: IpcMessage<'_>) {
    let body = h(body_hex);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);

    assert_eq!(IpcMessage::decode(&frame), Ok(want), "{body_hex}");
    let mut out = vec![0xa5; want.buffer_len()];
    assert_eq!(want.emit(&mut out), Ok(frame.len()));
    assert_eq!(out, frame, "{body_hex}");
}

#[test]
fn section_9_vectors() {
    let dst = AddrPort::new(Addr::new(0, 1), 7);
    round_trip("03 0000 00000001 0007", IpcMessage::Dial { dst });
    round_trip("04 00000001", IpcMessage::DialOk { conn_id: 1 });
    round_trip(
        "06 00000001 68656c6c6f",
        IpcMessage::Send {
            conn_id: 1,
            data: b"hello",
        },
    );
    round_trip(
        "07 00000001 68656c6c6f",
        IpcMessage::Recv {
            conn_id: 1,
            data: b"hello",
        },
    );
    round_trip("08 00000001", IpcMessage::Close { conn_id: 1 });
    round_trip("09 00000001", IpcMessage::CloseOk { conn_id: 1 });
    let message = b"dial timeout";
    round_trip(
        "0a 0001 6469616c2074696d656f7574",
        IpcMessage::Error { code: 1, message },
    );
}

#[test]
fn accept_and_recv_from_layouts() {
    let remote = AddrPort::new(Addr::new(0, 3), 49152);
    let accept = IpcMessage::Accept {
        local_port: 5002,
        conn_id: 4,
        remote,
    };
    round_trip("05 138a 00000004 0000 00000003 c000", accept);

    let src = AddrPort::new(Addr::new(0, 1), 49156);
    let data = b"dgram-two";
    let msg = IpcMessage::RecvFrom {
        src,
        dst_port: 5001,
        data,
    };
    round_trip("0c 0000 00000001 c004 1389 646772616d2d74776f", msg);
}

#[test]
fn handshake_sub_commands() {
    let justification = b"second request";
    let req = HandshakeCmd::Request {
        node: 2,
        justification,
    };
    round_trip(
        "0f 01 00000002 7365636f6e642072657175657374",
        IpcMessage::Handshake(req),
    );
    round_trip("0f 04", IpcMessage::Handshake(HandshakeCmd::Pending));
    round_trip(
        "0f 06 00000002",
        IpcMessage::Handshake(HandshakeCmd::Revoke { node: 2 }),
    );
    let odd = HandshakeCmd::Unknown { sub: 9, args: b"x" };
    round_trip("0f 09 78", IpcMessage::Handshake(odd));
}

#[test]
fn unknown_command_kept() {
    round_trip(
        "7f",
        IpcMessage::Unknown {
            cmd: 0x7f,
            payload: &[],
        },
    );
    let bad = IpcMessage::Unknown {
        cmd: 0x01,
        payload: &[],
    };
    assert!(matches!(
        bad.emit(&mut [0; 8]),
        Err(EmitError::Inconsistent { .. })
    ));
}

#[test]
fn framing_errors() {
    assert_eq!(frame_len(&[0, 0]), Ok(None));
    assert!(matches!(
        frame_len(&h("00100001")),
        Err(ParseError::TooLarge { .. })
    ));
    assert_eq!(frame_len(&h("00100000")), Ok(Some(4 + (1 << 20))));
    assert!(matches!(
        IpcMessage::decode(&h("00000000")),
        Err(ParseError::Malformed { .. })
    ));
    assert_eq!(
        IpcMessage::decode(&h("00000005 04 0000")),
        Err(ParseError::BadLength {
            declared: 9,
            actual: 7
        })
    );
    assert_eq!(
        IpcMessage::decode(&h("00000003 04 0000")),
        Err(ParseError::Truncated { needed: 4, got: 2 })
    );
    assert!(matches!(
        IpcMessage::decode(&h("00000002 0d 00")),
        Err(ParseError::Malformed { what: "Info", .. })
    ));
}
