//! Harness for the integration tests: start the real `warden` binary and real peers
//! (npm `minecraft-protocol` players and servers, PyPI `mcstatus`), and read what they say.
//!
//! The helpers live in `warden-testkit` (tests/kit), shared with the crates' own tests;
//! this crate re-exports them so that every file in tests/tests says `use warden_tests::*`.

pub use warden_testkit::*;
