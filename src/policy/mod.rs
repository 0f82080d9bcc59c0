//! Route policy (docs/configuration.md, Traffic policy).

pub mod rate_limit;
