//! The extended protocol's control messages: byte vectors, round trips and untrusted input.

use bytes::Bytes;
use pilot_proto::pubsub::client::ClientSession;
use pilot_proto::pubsub::codec::{
    ClientMessage, Delivery, ErrorCode, Frame, FrameReader, GapNotice, GapReason, ServerMessage,
    SubscribeRequest,
};
use pilot_proto::pubsub::{Seq, SubscriptionId, Topic, TopicFilter};
use proptest::prelude::*;

fn one_frame(bytes: &[u8]) -> Frame {
    let mut reader = FrameReader::new(usize::MAX);
    reader.push(bytes);
    let frame = reader.next_frame().unwrap().expect("a whole frame");
    assert_eq!(reader.buffered(), 0, "exactly one frame");
    frame
}

#[test]
fn hello_bytes_are_fixed() {
    let bytes = ClientMessage::Hello { version: 1 }.encode();
    let expected =
        hex::decode("000c2470696c6f742e68656c6c6f000000065045563101 00".replace(' ', ""));
    assert_eq!(bytes, expected.unwrap());
}

#[test]
fn a_go_subscribe_frame_is_not_a_hello() {
    // What the v0.5 client helper writes to subscribe: topic, empty payload.
    let frame = one_frame(&hex::decode("000c2470696c6f742e68656c6c6f00000000").unwrap());
    assert!(ClientMessage::decode(&frame).is_err());
}

#[test]
fn client_messages_round_trip() {
    let messages = [
        ClientMessage::Hello { version: 1 },
        ClientMessage::Subscribe(SubscribeRequest {
            id: SubscriptionId(7),
            filter: TopicFilter::parse("tasks.>").unwrap(),
            since: Some(Seq(42)),
            durable: Some("worker-1".into()),
            echo: true,
        }),
        ClientMessage::Subscribe(SubscribeRequest {
            id: SubscriptionId(0),
            filter: TopicFilter::parse("*").unwrap(),
            since: None,
            durable: None,
            echo: false,
        }),
        ClientMessage::Unsubscribe {
            id: SubscriptionId(3),
        },
        ClientMessage::Ack {
            id: SubscriptionId(3),
            seq: Seq(u64::MAX),
        },
        ClientMessage::Publish {
            topic: Topic::parse("a.b").unwrap(),
            payload: Bytes::from("x"),
        },
    ];
    for message in messages {
        let frame = one_frame(&message.encode());
        assert_eq!(ClientMessage::decode(&frame).unwrap(), message);
    }
}

#[test]
fn server_messages_round_trip() {
    let messages = [
        ServerMessage::Welcome {
            version: 1,
            head: Seq(9),
            first: Seq(3),
        },
        ServerMessage::SubAck {
            id: SubscriptionId(1),
            next: Seq(10),
        },
        ServerMessage::PubAck {
            number: 2,
            seq: Seq(11),
        },
        ServerMessage::Event(Delivery {
            id: SubscriptionId(1),
            seq: Seq(11),
            attempt: 2,
            topic: Topic::parse("sensors.t").unwrap(),
            payload: Bytes::from("22.5"),
        }),
        ServerMessage::Gap(GapNotice {
            id: SubscriptionId(1),
            reason: GapReason::Overflow,
            from: Seq(3),
            to: Seq(8),
            missed: 4,
        }),
        ServerMessage::Error {
            code: ErrorCode::Limit,
            id: SubscriptionId(5),
            message: "too many subscriptions".into(),
        },
        ServerMessage::Plain {
            topic: Bytes::from("alerts"),
            payload: Bytes::from("down"),
        },
    ];
    for message in messages {
        let frame = one_frame(&message.encode());
        assert_eq!(ServerMessage::decode(&frame).unwrap(), message);
    }
}

#[test]
fn durable_names_are_checked() {
    let mut request = SubscribeRequest {
        id: SubscriptionId(1),
        filter: TopicFilter::parse("a").unwrap(),
        since: None,
        durable: Some("bad name".into()),
        echo: false,
    };
    let frame = one_frame(&ClientMessage::Subscribe(request.clone()).encode());
    assert!(ClientMessage::decode(&frame).is_err());
    request.durable = Some("x".repeat(65));
    let frame = one_frame(&ClientMessage::Subscribe(request).encode());
    assert!(ClientMessage::decode(&frame).is_err());
}

#[test]
fn reader_refuses_payloads_over_its_limit() {
    let mut reader = FrameReader::new(4);
    reader.push(&hex::decode("000161 00000005".replace(' ', "")).unwrap());
    assert!(reader.next_frame().is_err());
}

proptest! {
    #[test]
    fn control_payloads_never_panic(
        topic in prop::sample::select(vec![
            "$pilot.hello", "$pilot.sub", "$pilot.unsub", "$pilot.ack", "$pilot.welcome",
            "$pilot.suback", "$pilot.puback", "$pilot.ev", "$pilot.gap", "$pilot.error",
            "$pilot.nope", "plain.topic",
        ]),
        payload in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let frame = Frame { topic: Bytes::from(topic), payload: Bytes::from(payload) };
        let _ = ClientMessage::decode(&frame);
        let _ = ServerMessage::decode(&frame);
    }

    #[test]
    fn client_session_survives_any_bytes(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
    ) {
        let mut session = ClientSession::new();
        let (id, _) = session.subscribe(TopicFilter::parse("a").unwrap(), Default::default());
        for chunk in &chunks {
            if session.handle_bytes(chunk).is_err() {
                break;
            }
            while session.poll_message().is_some() {}
        }
        let _ = session.last_seen(id);
        prop_assert_eq!(session.resume().len(), 2);
    }

    #[test]
    fn reader_handles_any_split(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..10),
    ) {
        let mut reader = FrameReader::new(1 << 20);
        for chunk in &chunks {
            reader.push(chunk);
            while let Ok(Some(frame)) = reader.next_frame() {
                let _ = ClientMessage::decode(&frame);
            }
        }
    }
}
