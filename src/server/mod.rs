//! Placeholder until the server module lands.
