//! Topic grammar: published [`Topic`]s and subscription [`TopicFilter`]s, parsed once.
//!
//! A topic is `.`-separated tokens. In a filter, the token `*` matches exactly one token and `>`
//! (last only) matches one or more trailing tokens. A filter that is exactly `*` keeps its v0.5
//! meaning, "every topic", and is treated as an alias of `>`. Topics whose first token starts
//! with `$` are system topics: a filter whose first token is a wildcard never matches them.
//! Values of these types are valid by construction; nothing downstream re-checks them.

use std::fmt;

/// Longest topic or filter, in bytes (the v0.5 frame reader's limit).
pub const MAX_TOPIC_LEN: usize = crate::wire::event::MAX_TOPIC_LEN;

/// Most tokens a topic or filter may have.
pub const MAX_TOKENS: usize = 32;

/// First token reserved for the extended protocol's control frames (`$pilot.hello`, ...).
pub const RESERVED_PREFIX: &str = "$pilot";

/// Why a topic or filter was refused. Positions count tokens from 0; offsets count bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic has no bytes at all.
    #[error("topic is empty")]
    Empty,
    /// The topic is longer than [`MAX_TOPIC_LEN`].
    #[error("topic of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Length found.
        len: usize,
        /// Largest length allowed.
        max: usize,
    },
    /// The topic has more than [`MAX_TOKENS`] tokens.
    #[error("topic has more than {max} tokens")]
    TooManyTokens {
        /// Most tokens allowed.
        max: usize,
    },
    /// Two dots in a row, or a dot at the start or end.
    #[error("empty token at position {position}")]
    EmptyToken {
        /// Token index.
        position: usize,
    },
    /// A whitespace character (space, tab, newline, ...).
    #[error("whitespace at byte {offset}")]
    Whitespace {
        /// Byte offset.
        offset: usize,
    },
    /// A control character such as NUL.
    #[error("control character at byte {offset}")]
    ControlCharacter {
        /// Byte offset.
        offset: usize,
    },
    /// The bytes are not UTF-8.
    #[error("invalid utf-8 at byte {offset}")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// `*` or `>` mixed with other characters in one token (`a*`, `>>`).
    #[error("wildcard inside token {position}")]
    WildcardInToken {
        /// Token index.
        position: usize,
    },
    /// `>` somewhere other than the last token of a filter.
    #[error("'>' is not the last token (position {position})")]
    TailWildcardNotLast {
        /// Token index.
        position: usize,
    },
    /// A wildcard token in a topic being published.
    #[error("published topic has a wildcard at token {position}")]
    WildcardInTopic {
        /// Token index.
        position: usize,
    },
    /// The first token is `$pilot`, which the protocol keeps for its control frames.
    #[error("topics under '$pilot' are reserved")]
    Reserved,
}

/// A concrete topic an event is published on: no wildcards.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Topic(Box<str>);

impl Topic {
    /// Parses a topic to publish on.
    ///
    /// # Errors
    ///
    /// Any [`TopicError`] naming the first problem found.
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        check_shape(text)?;
        if let Some(position) = text.split('.').position(is_wildcard) {
            return Err(TopicError::WildcardInTopic { position });
        }
        Ok(Self(text.into()))
    }

    /// Parses a topic from wire bytes, which must be UTF-8.
    ///
    /// # Errors
    ///
    /// [`TopicError::InvalidUtf8`] or any error of [`Topic::parse`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TopicError> {
        Self::parse(utf8(bytes)?)
    }

    /// Returns the topic text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the tokens in order.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// Returns whether this is a system topic (first token starts with `$`).
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

/// A subscription pattern: tokens, `*` (one token) and a final `>` (one or more tokens).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicFilter(Box<str>);

impl TopicFilter {
    /// Parses a subscription filter.
    ///
    /// # Errors
    ///
    /// Any [`TopicError`] naming the first problem found.
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        check_shape(text)?;
        let count = text.split('.').count();
        if let Some(position) = text.split('.').position(|t| t == ">")
            && position + 1 != count
        {
            return Err(TopicError::TailWildcardNotLast { position });
        }
        Ok(Self(text.into()))
    }

    /// Parses a filter from wire bytes, which must be UTF-8.
    ///
    /// # Errors
    ///
    /// [`TopicError::InvalidUtf8`] or any error of [`TopicFilter::parse`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TopicError> {
        Self::parse(utf8(bytes)?)
    }

    /// Returns the filter text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the tokens in order.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// Returns whether this is the v0.5 "every topic" filter, a bare `*`.
    pub fn is_legacy_all(&self) -> bool {
        &*self.0 == "*"
    }

    /// Returns whether the filter has no wildcard (it matches exactly one topic).
    pub fn is_literal(&self) -> bool {
        !self.tokens().any(is_wildcard)
    }

    /// Returns whether `topic` matches. This is the reference definition the index is checked
    /// against.
    pub fn matches(&self, topic: &Topic) -> bool {
        let mut filter = self.tokens().peekable();
        let leading_wildcard = filter.peek().is_some_and(|t| is_wildcard(t));
        if topic.is_system() && leading_wildcard {
            return false;
        }
        if self.is_legacy_all() {
            return true;
        }

        let mut topic_tokens = topic.tokens();
        for pattern in filter {
            let Some(token) = topic_tokens.next() else {
                return false;
            };
            match pattern {
                ">" => return true,
                "*" => {}
                literal if literal != token => return false,
                _ => {}
            }
        }
        topic_tokens.next().is_none()
    }
}

/// Checks everything topics and filters share: length, tokens, characters, reserved prefix.
fn check_shape(text: &str) -> Result<(), TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    if text.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong {
            len: text.len(),
            max: MAX_TOPIC_LEN,
        });
    }
    check_characters(text)?;

    for (position, token) in text.split('.').enumerate() {
        if position >= MAX_TOKENS {
            return Err(TopicError::TooManyTokens { max: MAX_TOKENS });
        }
        if token.is_empty() {
            return Err(TopicError::EmptyToken { position });
        }
        if !is_wildcard(token) && token.contains(['*', '>']) {
            return Err(TopicError::WildcardInToken { position });
        }
        if position == 0 && token == RESERVED_PREFIX {
            return Err(TopicError::Reserved);
        }
    }
    Ok(())
}

fn check_characters(text: &str) -> Result<(), TopicError> {
    for (offset, ch) in text.char_indices() {
        if ch.is_whitespace() {
            return Err(TopicError::Whitespace { offset });
        }
        if ch.is_control() {
            return Err(TopicError::ControlCharacter { offset });
        }
    }
    Ok(())
}

fn utf8(bytes: &[u8]) -> Result<&str, TopicError> {
    std::str::from_utf8(bytes).map_err(|err| TopicError::InvalidUtf8 {
        offset: err.valid_up_to(),
    })
}

fn is_wildcard(token: &str) -> bool {
    token == "*" || token == ">"
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", &*self.0)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicFilter({:?})", &*self.0)
    }
}

impl std::str::FromStr for Topic {
    type Err = TopicError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl std::str::FromStr for TopicFilter {
    type Err = TopicError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}
