//! Docs tier: the documentation's policies and the policy fixtures, run as a user would.

mod policies;
mod policy_fixtures;
