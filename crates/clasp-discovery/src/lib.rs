//! LAN discovery of CLASP routers: mDNS (_clasp._tcp.local.) advertise and browse, UDP broadcast responder and scan.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]
