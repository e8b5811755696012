//! One module per command. Each turns its arguments into calls on
//! `weir-node` or `weir-client` and prints for a person (or, with
//! `--format json`, for a script); none of them decides protocol matters.

pub(crate) mod bench;
pub(crate) mod consume;
pub(crate) mod group;
pub(crate) mod lines;
pub(crate) mod message;
pub(crate) mod plugin;
pub(crate) mod produce;
pub(crate) mod serve;
pub(crate) mod topic;
