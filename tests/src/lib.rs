//! End-to-end tests for weir: they start real nodes and real clients. The
//! tests live in `tests/tests/`; this library holds what they share.
