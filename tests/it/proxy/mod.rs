//! Proxy tier: the proxy in front of real upstreams, in-process and as the real binary.

mod client_ip;
mod faults;
mod mirror;
mod pipeline;
mod public_urls;
mod route_options;
