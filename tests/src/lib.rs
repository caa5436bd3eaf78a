//! Cross-crate test helpers; the tests themselves live in `tests/tests/`.
