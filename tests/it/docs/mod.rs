//! Docs tier: the documentation's links and policies and the policy fixtures, run as a user would.

mod links;
mod policies;
mod policy_fixtures;
