//! OSC over UDP listener for the CLASP router: OSC peers set params and get changes fed back.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]
