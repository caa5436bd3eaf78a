//! Packet header cost: parse + CRC verify, and emit + CRC fill, for small and MTU-sized
//! payloads. Time per iteration is time per packet; the byte counter gives throughput.
//!
//! Run with `cargo bench -p pilot-proto --bench wire`.

use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use pilot_proto::wire::addr::Addr;
use pilot_proto::wire::ipc::IpcMessage;
use pilot_proto::wire::packet::{Flags, PacketRepr, Protocol, VERSION};

const PAYLOAD_LENS: [usize; 2] = [64, 1200];

fn main() {
    divan::main();
}

fn repr(payload: &[u8]) -> PacketRepr<'_> {
    PacketRepr {
        version: VERSION,
        flags: Flags::ACK,
        protocol: Protocol::Stream,
        src: Addr::new(0, 1),
        dst: Addr::new(0, 2),
        src_port: 49152,
        dst_port: 1000,
        seq: 1,
        ack: 1,
        window: 512,
        payload,
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

#[divan::bench(args = PAYLOAD_LENS)]
fn parse_and_verify(bencher: Bencher<'_, '_>, payload_len: usize) {
    let payload = payload(payload_len);
    let repr = repr(&payload);
    let mut packet = vec![0; repr.buffer_len()];
    repr.emit(&mut packet).unwrap();

    bencher.counter(BytesCount::new(packet.len())).bench(|| {
        let parsed = PacketRepr::decode(black_box(&packet)).unwrap();
        black_box(parsed.seq)
    });
}

#[divan::bench(args = PAYLOAD_LENS)]
fn emit_with_checksum(bencher: Bencher<'_, '_>, payload_len: usize) {
    let payload = payload(payload_len);
    let repr = repr(&payload);
    let mut out = vec![0; repr.buffer_len()];

    bencher
        .counter(BytesCount::new(out.len()))
        .bench_local(|| black_box(&repr).emit(black_box(&mut out)).unwrap());
}

#[divan::bench]
fn ipc_recv_round_trip(bencher: Bencher<'_, '_>) {
    let data = payload(1200);
    let msg = IpcMessage::Recv {
        conn_id: 7,
        data: &data,
    };
    let mut frame = vec![0; msg.buffer_len()];

    bencher
        .counter(BytesCount::new(frame.len()))
        .bench_local(|| {
            black_box(&msg).emit(&mut frame).unwrap();
            black_box(IpcMessage::decode(black_box(&frame)).unwrap());
        });
}
