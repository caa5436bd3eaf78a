//! Arbitrary datagrams fed to a keyed tunnel never panic and never produce an event other
//! than `FrameDropped`; mutated copies of real frames (bit flips, truncations, counter and
//! sender rewrites) are dropped too, and the session keeps working.

mod tunnel_harness;

use pilot_proto::tunnel::{Event, Inbound};
use proptest::prelude::*;
use tunnel_harness::{Pair, addr};

/// Only `FrameDropped` may come out of hostile input.
fn assert_only_drop_events(pair: &mut Pair) -> Result<(), TestCaseError> {
    for event in pair.b.events.drain(..) {
        prop_assert!(
            matches!(event, Event::FrameDropped { .. }),
            "unexpected {event:?}"
        );
    }
    Ok(())
}

fn magic() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        b"PILT".to_vec(),
        b"PILS".to_vec(),
        b"PILK".to_vec(),
        b"PILA".to_vec(),
        b"PILP".to_vec(),
        b"PILX".to_vec(),
        vec![0x01],
        vec![],
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_datagrams_only_ever_drop(
        datagrams in prop::collection::vec(
            (magic(), prop::collection::vec(any::<u8>(), 0..300)),
            1..20,
        ),
    ) {
        let mut pair = Pair::established();
        let source = addr(77);
        for (magic, body) in datagrams {
            let mut bytes = [magic, body].concat();
            // PILT from an unkeyed node may be delivered as plaintext (v0.5 first flight);
            // nothing may come out encrypted, and no state-changing event may appear.
            let inbound = pair.b.tunnel.handle_datagram(pair.now, source, &mut bytes);
            let sealed_delivery = matches!(inbound, Inbound::Packet { encrypted: true, .. });
            prop_assert!(!sealed_delivery, "hostile bytes opened as a sealed packet");
            pair.b.collect_events();
            assert_only_drop_events(&mut pair)?;
        }
        prop_assert!(pair.b.transmits(pair.now).iter().all(|d| d.bytes.starts_with(b"PILA")));
        pair.assert_working();
    }

    #[test]
    fn mutated_real_frames_are_dropped(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut pair = Pair::established();
        let frames: Vec<_> = pair.log.iter().filter(|d| d.dst == pair.b.addr).cloned().collect();
        let mut bytes = frames[pick.index(frames.len())].bytes.clone();
        // Keep the magic so the frame reaches its handler; mutate everything after it.
        for (at, mask) in &flips {
            let index = 4 + at.index(bytes.len() - 4);
            bytes[index] ^= mask;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let before = pair.b.tunnel.stats().packets_opened;
        let inbound = pair.b.tunnel.handle_datagram(pair.now, addr(78), &mut bytes);
        let delivered = matches!(inbound, Inbound::Packet { .. });
        prop_assert!(!delivered, "mutated frame delivered: {:?}", inbound);
        prop_assert_eq!(pair.b.tunnel.stats().packets_opened, before);
        pair.b.collect_events();
        assert_only_drop_events(&mut pair)?;
        pair.assert_working();
    }
}
