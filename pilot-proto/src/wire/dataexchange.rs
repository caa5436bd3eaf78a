//! Data-exchange frames (port 1001).
