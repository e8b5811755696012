//! weir's segmented append-only log.
