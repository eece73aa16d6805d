//! Placeholder until the broker module lands.
