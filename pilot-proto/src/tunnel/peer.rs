//! One peer's state: endpoint, registered signing key, our X25519 secret for it, its sessions
//! (the installed one and a newer, not yet confirmed one), its receive windows and its queue of
//! packets waiting for a key (`docs/design/tunnel.md#peer-state`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use ed25519_dalek::VerifyingKey;
use subtle::ConstantTimeEq as _;

use crate::crypto::X25519Secret;
use crate::crypto::{NonceSequence, ReplayError, ReplayWindow, SessionCipher, TunnelKey};

// Limitation: only this many retired prefixes and replaced peer keys are remembered per peer;
// a replayed frame or key exchange older than that is treated as new (a frame still fails
// unless its key is current, a key exchange is then accepted as a new key).
/// Prefixes a session remembers after the peer moved away from them.
const RETIRED_PREFIXES: usize = 16;
/// Peer X25519 keys remembered after they were replaced.
const SUPERSEDED_KEYS: usize = 8;

/// A peer in the table. `Debug` shows no keys and no queued packets.
pub(super) struct Peer {
    pub(super) endpoint: SocketAddr,
    pub(super) signing_key: Option<VerifyingKey>,
    pub(super) secret: X25519Secret,
    pub(super) current: Option<Session>,
    pub(super) next: Option<Session>,
    pub(super) superseded: KeyHistory,
    pub(super) queue: VecDeque<Vec<u8>>,
    pub(super) exchange: ExchangeTimer,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("endpoint", &self.endpoint)
            .field("registered_key", &self.signing_key.is_some())
            .field("current", &self.current.is_some())
            .field("next", &self.next.is_some())
            .field("queued", &self.queue.len())
            .field("exchange", &self.exchange)
            .finish()
    }
}

/// Key-exchange retry state.
#[derive(Debug, Default)]
pub(super) struct ExchangeTimer {
    pub(super) attempts: u32,
    pub(super) deadline: Option<Instant>,
    pub(super) last_sent: Option<Instant>,
}

/// How a received peer X25519 key relates to what we hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyStatus {
    /// An installed session already uses it with our current secret.
    Repeated,
    /// The peer has already replaced it.
    Stale,
    /// Not seen before.
    New,
}

/// Which of a peer's two sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Current,
    Next,
}

impl Peer {
    pub(super) fn new(
        endpoint: SocketAddr,
        signing_key: Option<VerifyingKey>,
        secret: X25519Secret,
    ) -> Self {
        Self {
            endpoint,
            signing_key,
            secret,
            current: None,
            next: None,
            superseded: KeyHistory::default(),
            queue: VecDeque::new(),
            exchange: ExchangeTimer::default(),
        }
    }

    /// Whether any session (confirmed or not) is installed.
    pub(super) fn has_session(&self) -> bool {
        self.current.is_some() || self.next.is_some()
    }

    /// Steady state: one confirmed session under our current secret and nothing pending.
    pub(super) fn is_settled(&self) -> bool {
        let ours = self.secret.public_key();
        self.next.is_none()
            && self
                .current
                .as_ref()
                .is_some_and(|s| s.confirmed && s.local_public == ours)
    }

    /// Classifies a peer key received in a PILA/PILK (constant-time comparisons).
    pub(super) fn key_status(&self, peer_public: &[u8; 32]) -> KeyStatus {
        let ours = self.secret.public_key();
        let repeated = [&self.current, &self.next]
            .into_iter()
            .flatten()
            .any(|session| {
                bool::from(
                    session.peer_public.ct_eq(peer_public) & session.local_public.ct_eq(&ours),
                )
            });
        if repeated {
            KeyStatus::Repeated
        } else if self.superseded.contains(peer_public) {
            KeyStatus::Stale
        } else {
            KeyStatus::New
        }
    }

    /// Installs a session; returns whether one already existed. The old sessions stay for
    /// receiving until the new one decrypts a frame.
    pub(super) fn install(&mut self, session: Session) -> bool {
        if self.current.is_none() {
            self.current = Some(session);
            return false;
        }
        if let Some(old_next) = self.next.take() {
            self.retire_key(&old_next.peer_public, &session.peer_public);
        }
        self.next = Some(session);
        true
    }

    /// Makes the pending session the current one after it decrypted a frame.
    pub(super) fn promote(&mut self) {
        let Some(next) = self.next.take() else { return };
        if let Some(old) = self.current.take() {
            self.retire_key(&old.peer_public, &next.peer_public);
        }
        self.current = Some(next);
    }

    /// The session to seal with: the pending one if present, else the current one; never one
    /// whose nonces are used up.
    pub(super) fn sending_session(&mut self) -> Option<&mut Session> {
        [&mut self.next, &mut self.current]
            .into_iter()
            .flatten()
            .find(|session| !session.send.is_exhausted())
    }

    /// Whether some session can still seal.
    pub(super) fn can_send(&self) -> bool {
        [&self.next, &self.current]
            .into_iter()
            .flatten()
            .any(|s| !s.send.is_exhausted())
    }

    /// Whether `prefix` is one of the prefixes we seal with (a reflected frame).
    // Limitation: a genuine peer whose random prefix equals ours (chance 2^-32 per session)
    // is dropped as a reflection; v0.5's shared key leaves no better option.
    pub(super) fn is_own_prefix(&self, prefix: [u8; 4]) -> bool {
        [&self.current, &self.next]
            .into_iter()
            .flatten()
            .any(|s| s.send.prefix() == prefix)
    }

    /// Picks the session a PILS with `prefix` belongs to: the one that knows the prefix, else
    /// the newest (a new prefix most likely comes with a new key).
    pub(super) fn session_for(&self, prefix: [u8; 4]) -> Option<Slot> {
        let knows = |slot: &Option<Session>| slot.as_ref().is_some_and(|s| s.recv.knows(prefix));
        if knows(&self.next) {
            return Some(Slot::Next);
        }
        if knows(&self.current) {
            return Some(Slot::Current);
        }
        match (&self.next, &self.current) {
            (Some(_), _) => Some(Slot::Next),
            (None, Some(_)) => Some(Slot::Current),
            (None, None) => None,
        }
    }

    pub(super) fn session_mut(&mut self, slot: Slot) -> Option<&mut Session> {
        match slot {
            Slot::Current => self.current.as_mut(),
            Slot::Next => self.next.as_mut(),
        }
    }

    fn retire_key(&mut self, old: &[u8; 32], replacement: &[u8; 32]) {
        if !bool::from(old.ct_eq(replacement)) {
            self.superseded.push(*old);
        }
    }
}

/// One session: a key agreed from one peer key and one of our secrets.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) peer_public: [u8; 32],
    pub(super) local_public: [u8; 32],
    pub(super) cipher: SessionCipher,
    pub(super) send: NonceSequence,
    pub(super) recv: RecvWindows,
    pub(super) confirmed: bool,
}

impl Session {
    pub(super) fn new(
        key: &TunnelKey,
        peer_public: [u8; 32],
        local_public: [u8; 32],
        send: NonceSequence,
    ) -> Self {
        Self {
            peer_public,
            local_public,
            cipher: SessionCipher::new(key),
            send,
            recv: RecvWindows::default(),
            confirmed: false,
        }
    }
}

/// Why a received counter is refused under a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecvReject {
    Replay(ReplayError),
    StalePrefix,
}

/// Receive replay state of one session, one window per sender nonce prefix. v0.5 senders pick
/// a new prefix and restart their counter whenever they receive our PILA, under the same key,
/// so a window per prefix avoids false replays. The two newest prefixes keep windows (frames
/// of the older one may still be in flight); older prefixes are remembered and refused.
#[derive(Debug, Default)]
pub(super) struct RecvWindows {
    windows: [Option<([u8; 4], ReplayWindow)>; 2],
    retired: [[u8; 4]; RETIRED_PREFIXES],
    retired_len: usize,
    retired_next: usize,
}

impl RecvWindows {
    /// Whether the prefix has a window or was retired.
    pub(super) fn knows(&self, prefix: [u8; 4]) -> bool {
        self.window(prefix).is_some() || self.is_retired(prefix)
    }

    /// Checks a counter without changing anything. A new prefix passes.
    pub(super) fn check(&self, prefix: [u8; 4], counter: u64) -> Result<(), RecvReject> {
        if let Some(window) = self.window(prefix) {
            return window.check(counter).map_err(RecvReject::Replay);
        }
        if self.is_retired(prefix) {
            return Err(RecvReject::StalePrefix);
        }
        Ok(())
    }

    /// Marks an authenticated counter. Returns whether it is the newest seen under its prefix
    /// (a fresh frame rather than a reordered one).
    pub(super) fn mark(&mut self, prefix: [u8; 4], counter: u64) -> bool {
        if let Some(window) = self.window_mut(prefix) {
            let fresh = counter > window.highest();
            window.mark(counter);
            return fresh;
        }
        if let Some((retired, _)) = self.windows[1].take() {
            self.retired[self.retired_next] = retired;
            self.retired_next = (self.retired_next + 1) % RETIRED_PREFIXES;
            self.retired_len = (self.retired_len + 1).min(RETIRED_PREFIXES);
        }
        self.windows[1] = self.windows[0].take();
        let mut window = ReplayWindow::new();
        window.mark(counter);
        self.windows[0] = Some((prefix, window));
        true
    }

    fn window(&self, prefix: [u8; 4]) -> Option<&ReplayWindow> {
        self.windows
            .iter()
            .flatten()
            .find(|(p, _)| *p == prefix)
            .map(|(_, w)| w)
    }

    fn window_mut(&mut self, prefix: [u8; 4]) -> Option<&mut ReplayWindow> {
        self.windows
            .iter_mut()
            .flatten()
            .find(|(p, _)| *p == prefix)
            .map(|(_, w)| w)
    }

    fn is_retired(&self, prefix: [u8; 4]) -> bool {
        self.retired[..self.retired_len].contains(&prefix)
    }
}

/// A bounded memory of peer X25519 keys that were replaced, so that replayed key exchanges
/// carrying them are refused.
#[derive(Debug, Default)]
pub(super) struct KeyHistory {
    keys: [[u8; 32]; SUPERSEDED_KEYS],
    len: usize,
    next: usize,
}

impl KeyHistory {
    fn push(&mut self, key: [u8; 32]) {
        self.keys[self.next] = key;
        self.next = (self.next + 1) % SUPERSEDED_KEYS;
        self.len = (self.len + 1).min(SUPERSEDED_KEYS);
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.keys[..self.len]
            .iter()
            .fold(subtle::Choice::from(0), |found, k| found | k.ct_eq(key))
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: [u8; 4] = [1; 4];
    const P2: [u8; 4] = [2; 4];
    const P3: [u8; 4] = [3; 4];

    #[test]
    fn two_newest_prefixes_keep_windows_older_ones_are_stale() {
        let mut windows = RecvWindows::default();
        assert!(windows.mark(P1, 5));
        assert!(windows.mark(P2, 1));
        // P1 still has its window: an in-flight older frame is accepted once.
        assert_eq!(windows.check(P1, 4), Ok(()));
        assert!(!windows.mark(P1, 4));
        assert_eq!(
            windows.check(P1, 4),
            Err(RecvReject::Replay(ReplayError::Replayed))
        );
        // A third prefix retires P1 for good.
        assert!(windows.mark(P3, 1));
        assert_eq!(windows.check(P1, 6), Err(RecvReject::StalePrefix));
        assert_eq!(windows.check(P2, 2), Ok(()));
        assert!(windows.knows(P1) && windows.knows(P2) && windows.knows(P3));
    }

    #[test]
    fn retired_prefixes_are_bounded() {
        let mut windows = RecvWindows::default();
        for index in 0..=(RETIRED_PREFIXES as u32 + 2) {
            windows.mark(index.to_be_bytes(), 1);
        }
        // The oldest retired prefix has been forgotten; the newest retired one is remembered.
        assert!(!windows.knows(0u32.to_be_bytes()));
        assert_eq!(
            windows.check(2u32.to_be_bytes(), 9),
            Err(RecvReject::StalePrefix)
        );
    }

    #[test]
    fn key_history_remembers_a_bounded_number_of_keys() {
        let mut history = KeyHistory::default();
        for key in 0..=SUPERSEDED_KEYS as u8 {
            history.push([key; 32]);
        }
        assert!(!history.contains(&[0; 32]));
        assert!(history.contains(&[1; 32]));
        assert!(history.contains(&[SUPERSEDED_KEYS as u8; 32]));
    }
}
