//! OSCQuery (Vidvox's proposal, third revision) for the OSC bridge: the tree of params it
//! serves ([`serve`]), advertised over mDNS ([`advertise`]), and another app's tree mirrored
//! into params ([`mirror`]).

pub mod advertise;
pub mod mirror;
pub(crate) mod serve;
pub mod tree;
pub mod types;

pub use tree::{Describe, DescribeError, Tree, TreeChange};
