//! The subscription index: which subscriptions a published topic reaches.
//!
//! A trie with one level per token. Each node has literal children, at most one `*` child, the
//! subscriptions that end at the node, and the subscriptions ending in `>` at the node. Matching
//! walks at most two branches per level, so its cost depends on the topic's depth and the
//! number of results, not on the number of subscriptions. A bounded cache of recent topics in
//! front of the trie answers repeated topics with one hash lookup; any insert or remove clears
//! it. The index must agree with [`TopicFilter::matches`]; a property test checks that.
//!
//! # Limitations
//!
//! - The cache is cleared wholesale when full or when a subscription changes, so workloads with
//!   more distinct hot topics than the cache holds, or with heavy subscription churn, run at the
//!   uncached rate.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use super::topic::{MAX_TOKENS, Topic, TopicFilter};

/// Topics remembered by default in the match cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 4_096;

/// Literal children kept in a vector (searched linearly) before switching to a hash map.
const SMALL_CHILDREN: usize = 8;

/// Maps topics to the keys of the subscriptions whose filters match them.
#[derive(Debug)]
pub struct SubscriptionIndex<K> {
    nodes: Vec<Node<K>>,
    free: Vec<u32>,
    tokens: Interner,
    len: usize,
    cache: HashMap<Box<str>, u32>,
    cache_results: Vec<Box<[K]>>,
    cache_capacity: usize,
    scratch: Vec<K>,
}

#[derive(Debug)]
struct Node<K> {
    literal: Children,
    star: Option<u32>,
    exact: Vec<K>,
    tail: Vec<K>,
}

/// Literal children, keyed by interned token id.
#[derive(Debug)]
enum Children {
    Small(Vec<(u32, u32)>),
    Large(HashMap<u32, u32, BuildHasherDefault<IdHasher>>),
}

/// Gives each literal token of a stored filter a small id, so that matching hashes each topic
/// token once and then follows integer-keyed edges. Ids are counted per trie edge and reused.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Option<Box<str>>>,
    edges: Vec<u32>,
    free: Vec<u32>,
}

impl<K: Copy + Eq + Hash> SubscriptionIndex<K> {
    /// Creates an empty index with the default cache size.
    pub fn new() -> Self {
        Self::with_cache_capacity(DEFAULT_CACHE_CAPACITY)
    }

    /// Creates an empty index remembering up to `capacity` topics (0 disables the cache).
    pub fn with_cache_capacity(capacity: usize) -> Self {
        Self {
            nodes: vec![Node::new()],
            free: Vec::new(),
            tokens: Interner::default(),
            len: 0,
            cache: HashMap::new(),
            cache_results: Vec::new(),
            cache_capacity: capacity,
            scratch: Vec::new(),
        }
    }

    /// Adds `key` under `filter`. Adding the same key twice under one filter stores it twice;
    /// callers keep keys unique.
    pub fn insert(&mut self, filter: &TopicFilter, key: K) {
        self.clear_cache();
        let (node, is_tail) = self.path_to(filter);
        let node = &mut self.nodes[node as usize];
        if is_tail {
            node.tail.push(key)
        } else {
            node.exact.push(key)
        }
        self.len += 1;
    }

    /// Removes `key` from under `filter`, returning whether it was there.
    pub fn remove(&mut self, filter: &TopicFilter, key: K) -> bool {
        let Some((path, is_tail)) = self.find_path(filter) else {
            return false;
        };
        let Some(&last) = path.last() else {
            return false;
        };
        let list = match is_tail {
            true => &mut self.nodes[last as usize].tail,
            false => &mut self.nodes[last as usize].exact,
        };
        let Some(at) = list.iter().position(|k| *k == key) else {
            return false;
        };
        list.swap_remove(at);

        self.clear_cache();
        self.len -= 1;
        self.prune(filter, &path);
        true
    }

    /// Returns the keys whose filters match `topic`, using and filling the cache.
    pub fn matches(&mut self, topic: &Topic) -> &[K] {
        if let Some(&slot) = self.cache.get(topic.as_str()) {
            return &self.cache_results[slot as usize];
        }
        let mut found = std::mem::take(&mut self.scratch);
        found.clear();
        self.collect(topic, &mut found);

        if self.cache_capacity == 0 {
            self.scratch = found;
            return &self.scratch;
        }
        // Limitation: a full cache is cleared wholesale rather than evicting cold entries, so more
        // distinct hot topics than the capacity run at the uncached rate.
        if self.cache.len() >= self.cache_capacity {
            self.clear_cache();
        }
        let slot = self.cache_results.len();
        self.cache_results.push(found.as_slice().into());
        self.cache.insert(topic.as_str().into(), slot as u32);
        self.scratch = found;
        &self.cache_results[slot]
    }

    /// Appends the keys whose filters match `topic` to `out`, bypassing the cache.
    pub fn collect(&self, topic: &Topic, out: &mut Vec<K>) {
        // A token no filter uses gets no id; only wildcards can match at its level.
        let mut ids = [None; MAX_TOKENS];
        let mut count = 0;
        for token in topic.tokens().take(MAX_TOKENS) {
            ids[count] = self.tokens.lookup(token);
            count += 1;
        }
        self.walk(0, &ids[..count], 0, topic.is_system(), out);
    }

    /// Returns the number of stored keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn walk(&self, node: u32, ids: &[Option<u32>], depth: usize, system: bool, out: &mut Vec<K>) {
        let node = &self.nodes[node as usize];
        let Some(id) = ids.get(depth) else {
            out.extend_from_slice(&node.exact);
            return;
        };

        // Wildcards at the first level never reach system topics.
        if !(system && depth == 0) {
            out.extend_from_slice(&node.tail);
            if let Some(star) = node.star {
                self.walk(star, ids, depth + 1, system, out);
            }
        }
        if let Some(child) = id.and_then(|id| node.literal.get(id)) {
            self.walk(child, ids, depth + 1, system, out);
        }
    }

    /// Walks to (creating) the node a filter ends at; `true` when the last token is `>`.
    fn path_to(&mut self, filter: &TopicFilter) -> (u32, bool) {
        if filter.is_legacy_all() {
            return (0, true);
        }
        let mut node = 0u32;
        for token in filter.tokens() {
            if token == ">" {
                return (node, true);
            }
            node = match self.child(node, token) {
                Some(child) => child,
                None => self.add_child(node, token),
            };
        }
        (node, false)
    }

    /// Returns the nodes from the root to where `filter` ends, without creating any.
    fn find_path(&self, filter: &TopicFilter) -> Option<(Vec<u32>, bool)> {
        let mut path = vec![0u32];
        if filter.is_legacy_all() {
            return Some((path, true));
        }
        for token in filter.tokens() {
            if token == ">" {
                return Some((path, true));
            }
            path.push(self.child(*path.last()?, token)?);
        }
        Some((path, false))
    }

    fn child(&self, node: u32, token: &str) -> Option<u32> {
        let node = &self.nodes[node as usize];
        match token {
            "*" => node.star,
            literal => node.literal.get(self.tokens.lookup(literal)?),
        }
    }

    fn add_child(&mut self, parent: u32, token: &str) -> u32 {
        let child = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.nodes.push(Node::new());
                (self.nodes.len() - 1) as u32
            }
        };
        if token == "*" {
            self.nodes[parent as usize].star = Some(child);
        } else {
            let id = self.tokens.add_edge(token);
            self.nodes[parent as usize].literal.insert(id, child);
        }
        child
    }

    /// Frees the empty nodes at the end of a removed filter's path, deepest first.
    fn prune(&mut self, filter: &TopicFilter, path: &[u32]) {
        let tokens: Vec<&str> = filter.tokens().filter(|t| *t != ">").collect();
        for depth in (1..path.len()).rev() {
            let node = path[depth];
            if !self.nodes[node as usize].is_empty() {
                return;
            }
            let parent = &mut self.nodes[path[depth - 1] as usize];
            match tokens[depth - 1] {
                "*" => parent.star = None,
                literal => {
                    if let Some(id) = self.tokens.lookup(literal) {
                        parent.literal.remove(id);
                        self.tokens.remove_edge(id);
                    }
                }
            }
            self.free.push(node);
        }
    }

    fn clear_cache(&mut self) {
        self.cache.clear();
        self.cache_results.clear();
    }
}

impl<K: Copy + Eq + Hash> Default for SubscriptionIndex<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Node<K> {
    fn new() -> Self {
        Self {
            literal: Children::Small(Vec::new()),
            star: None,
            exact: Vec::new(),
            tail: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.exact.is_empty()
            && self.tail.is_empty()
    }
}

impl Children {
    fn get(&self, id: u32) -> Option<u32> {
        match self {
            Self::Small(entries) => entries.iter().find(|(t, _)| *t == id).map(|(_, n)| *n),
            Self::Large(map) => map.get(&id).copied(),
        }
    }

    fn insert(&mut self, id: u32, node: u32) {
        match self {
            Self::Small(entries) if entries.len() < SMALL_CHILDREN => entries.push((id, node)),
            Self::Small(entries) => {
                let mut map: HashMap<u32, u32, _> = entries.drain(..).collect();
                map.insert(id, node);
                *self = Self::Large(map);
            }
            Self::Large(map) => {
                map.insert(id, node);
            }
        }
    }

    fn remove(&mut self, id: u32) {
        match self {
            Self::Small(entries) => entries.retain(|(t, _)| *t != id),
            Self::Large(map) => {
                map.remove(&id);
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Small(entries) => entries.is_empty(),
            Self::Large(map) => map.is_empty(),
        }
    }
}

impl Interner {
    fn lookup(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Returns the token's id, counting one more edge that uses it.
    fn add_edge(&mut self, token: &str) -> u32 {
        if let Some(id) = self.lookup(token) {
            self.edges[id as usize] += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.names.push(None);
                self.edges.push(0);
                (self.names.len() - 1) as u32
            }
        };
        self.ids.insert(token.into(), id);
        self.names[id as usize] = Some(token.into());
        self.edges[id as usize] = 1;
        id
    }

    /// Counts one edge fewer using the token, forgetting it when none is left.
    fn remove_edge(&mut self, id: u32) {
        let edges = &mut self.edges[id as usize];
        *edges = edges.saturating_sub(1);
        if *edges == 0
            && let Some(name) = self.names[id as usize].take()
        {
            self.ids.remove(&name);
            self.free.push(id);
        }
    }
}

/// Hashes the interned ids of literal children. The ids are assigned here, densely, so peers
/// cannot choose colliding values; a multiplicative hash spreads them.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*byte)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_u32(&mut self, value: u32) {
        self.0 = u64::from(value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted(mut keys: Vec<u32>) -> Vec<u32> {
        keys.sort_unstable();
        keys
    }

    fn topic(text: &str) -> Topic {
        Topic::parse(text).unwrap()
    }

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::parse(text).unwrap()
    }

    #[test]
    fn remove_prunes_and_reinsert_works() {
        let mut index = SubscriptionIndex::new();
        index.insert(&filter("a.b.c"), 1u32);
        index.insert(&filter("a.*.c"), 2);
        assert_eq!(sorted(index.matches(&topic("a.b.c")).to_vec()), vec![1, 2]);
        assert!(index.remove(&filter("a.b.c"), 1));
        assert!(!index.remove(&filter("a.b.c"), 1));
        assert_eq!(index.matches(&topic("a.b.c")), &[2]);
        assert!(index.remove(&filter("a.*.c"), 2));
        assert!(index.is_empty());
        assert_eq!(
            index.nodes.len() - index.free.len(),
            1,
            "only the root is left in use"
        );
        index.insert(&filter("a.b.c"), 3);
        assert_eq!(index.matches(&topic("a.b.c")), &[3]);
    }

    #[test]
    fn many_children_switch_to_a_map() {
        let mut index = SubscriptionIndex::new();
        for i in 0..40u32 {
            index.insert(&filter(&format!("t{i}.x")), i);
        }
        for i in 0..40u32 {
            assert_eq!(index.matches(&topic(&format!("t{i}.x"))), &[i]);
        }
    }

    const WORDS: [&str; 5] = ["a", "b", "c", "$s", "d"];

    fn token() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(&WORDS[..])
    }

    fn topic_strategy() -> impl Strategy<Value = Topic> {
        proptest::collection::vec(token(), 1..5).prop_map(|t| topic(&t.join(".")))
    }

    fn filter_strategy() -> impl Strategy<Value = TopicFilter> {
        let part = prop_oneof![4 => token(), 1 => Just("*")];
        (
            proptest::collection::vec(part, 1..5),
            any::<bool>(),
            any::<u8>(),
        )
            .prop_map(|(mut tokens, tail, legacy)| {
                if legacy < 8 {
                    return filter("*");
                }
                if tail {
                    *tokens.last_mut().unwrap() = ">";
                }
                filter(&tokens.join("."))
            })
    }

    proptest! {
        #[test]
        fn index_agrees_with_the_reference_matcher(
            filters in proptest::collection::vec(filter_strategy(), 0..40),
            removals in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
            topics in proptest::collection::vec(topic_strategy(), 1..30),
        ) {
            let mut index = SubscriptionIndex::with_cache_capacity(8);
            let mut live: Vec<(TopicFilter, u32)> = Vec::new();
            for (key, f) in filters.into_iter().enumerate() {
                index.insert(&f, key as u32);
                live.push((f, key as u32));
            }
            for pick in removals {
                if live.is_empty() { break; }
                let (f, key) = live.swap_remove(pick.index(live.len()));
                prop_assert!(index.remove(&f, key));
            }
            prop_assert_eq!(index.len(), live.len());

            for t in topics.iter().chain(topics.iter()) {
                let expected: Vec<u32> =
                    sorted(live.iter().filter(|(f, _)| f.matches(t)).map(|(_, k)| *k).collect());
                prop_assert_eq!(sorted(index.matches(t).to_vec()), expected.clone(), "{}", t);
                let mut direct = Vec::new();
                index.collect(t, &mut direct);
                prop_assert_eq!(sorted(direct), expected);
            }
        }
    }
}
