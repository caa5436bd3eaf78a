//! Topic grammar and matching, as tables: the cases issue 7 lists, the `$` guard, and every
//! validation error.

use pilot_proto::pubsub::topic::{MAX_TOKENS, MAX_TOPIC_LEN};
use pilot_proto::pubsub::{SubscriptionIndex, Topic, TopicError, TopicFilter};

fn matches(filter: &str, topic: &str) -> bool {
    let filter = TopicFilter::parse(filter).unwrap();
    let topic = Topic::parse(topic).unwrap();
    let reference = filter.matches(&topic);

    // The index must agree with the reference on every row.
    let mut index = SubscriptionIndex::new();
    index.insert(&filter, 1u8);
    assert_eq!(
        index.matches(&topic).contains(&1),
        reference,
        "index vs reference"
    );
    reference
}

#[test]
fn issue_table() {
    let rows = [
        ("tasks.*", "tasks.complete", true),
        ("tasks.*", "tasks", false),
        ("tasks.*", "tasks.complete.x", false),
        ("tasks.>", "tasks.complete", true),
        ("tasks.>", "tasks.complete.x", true),
        ("tasks.>", "tasks", false),
        ("*", "tasks", true),
        ("*", "tasks.complete", true),
        ("*", "tasks.complete.x", true),
        ("*", "a.b.c.d.e.f", true),
    ];
    for (filter, topic, expected) in rows {
        assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
    }
}

#[test]
fn wildcard_semantics() {
    let rows = [
        ("*.complete", "tasks.complete", true),
        ("*.complete", "tasks.started", false),
        ("a.*.c", "a.b.c", true),
        ("a.*.c", "a.c", false),
        ("a.*.*", "a.b.c", true),
        (">", "a", true),
        (">", "a.b.c", true),
        ("a.b", "a.b", true),
        ("a.b", "a.B", false),
        ("a.b", "a.b.c", false),
        ("a.*.>", "a.b", false),
        ("a.*.>", "a.b.c", true),
    ];
    for (filter, topic, expected) in rows {
        assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
    }
}

#[test]
fn system_topics_are_not_matched_by_a_leading_wildcard() {
    let rows = [
        (">", "$sys.x", false),
        ("*", "$sys", false),
        ("*.x", "$sys.x", false),
        ("$sys.>", "$sys.x", true),
        ("$sys.*", "$sys.x", true),
        ("$sys.x", "$sys.x", true),
        ("a.*", "a.$b", true),
    ];
    for (filter, topic, expected) in rows {
        assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
    }
}

#[test]
fn validation_errors_are_precise() {
    use TopicError::*;
    let long = "a".repeat(MAX_TOPIC_LEN + 1);
    let many = vec!["a"; MAX_TOKENS + 1].join(".");
    let rows: Vec<(&str, TopicError)> = vec![
        ("", Empty),
        ("a..b", EmptyToken { position: 1 }),
        (".a", EmptyToken { position: 0 }),
        ("a.", EmptyToken { position: 1 }),
        ("a b", Whitespace { offset: 1 }),
        ("a\tb", Whitespace { offset: 1 }),
        ("a\nb", Whitespace { offset: 1 }),
        ("a\0b", ControlCharacter { offset: 1 }),
        ("a\u{7f}", ControlCharacter { offset: 1 }),
        ("a.b*", WildcardInToken { position: 1 }),
        ("a.>>", WildcardInToken { position: 1 }),
        ("*a", WildcardInToken { position: 0 }),
        (
            &long,
            TooLong {
                len: MAX_TOPIC_LEN + 1,
                max: MAX_TOPIC_LEN,
            },
        ),
        (&many, TooManyTokens { max: MAX_TOKENS }),
        ("$pilot.hello", Reserved),
    ];
    for (text, error) in &rows {
        assert_eq!(TopicFilter::parse(text), Err(*error), "filter {text:?}");
        assert_eq!(Topic::parse(text), Err(*error), "topic {text:?}");
    }

    assert_eq!(
        TopicFilter::parse("a.>.b"),
        Err(TailWildcardNotLast { position: 1 })
    );
    assert_eq!(Topic::parse("a.*"), Err(WildcardInTopic { position: 1 }));
    assert_eq!(Topic::parse(">"), Err(WildcardInTopic { position: 0 }));
    assert_eq!(Topic::from_bytes(b"a\xffb"), Err(InvalidUtf8 { offset: 1 }));
}

#[test]
fn longest_allowed_topic_parses() {
    let exact = "a".repeat(MAX_TOPIC_LEN);
    assert!(Topic::parse(&exact).is_ok());
    let deepest = vec!["a"; MAX_TOKENS].join(".");
    assert!(TopicFilter::parse(&deepest).is_ok());
    assert!(
        TopicFilter::parse("$pilots.x").is_ok(),
        "only the exact token is reserved"
    );
}

#[test]
fn filter_predicates() {
    assert!(TopicFilter::parse("*").unwrap().is_legacy_all());
    assert!(!TopicFilter::parse(">").unwrap().is_legacy_all());
    assert!(TopicFilter::parse("a.b").unwrap().is_literal());
    assert!(!TopicFilter::parse("a.*").unwrap().is_literal());
}
