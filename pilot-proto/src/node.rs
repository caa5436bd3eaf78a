//! The node: one identity and one UDP socket, composing tunnel, transport, services and control plane.
