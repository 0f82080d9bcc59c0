//! Route policy (docs/configuration.md, Traffic policy): what a route checks
//! around its action.

pub mod basic_auth;
pub mod forward_auth;
