//! MQTT 3.1.1 and 5 listener for the CLASP router: MQTT clients join as CLASP sessions.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]
