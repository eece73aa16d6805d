//! Placeholder until config lands.
