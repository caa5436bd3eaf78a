//! The trust handshake (request, approve, reject, revoke) and the trust store.
