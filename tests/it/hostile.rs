//! Hostile HTTP input (issue #7).
