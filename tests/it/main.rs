//! Integration tests: one binary (link time matters on small machines). Every test
//! starts its own gateway over TLS on a random port with its own data directory, in
//! front of a real recording upstream, and drives it like a browser would.

mod framing;
mod helpers;
mod upstream;

mod admin;
mod cli;
mod codes;
mod crash;
mod limits;
mod login_flow;
mod operating;
mod proxying;
mod reset;
mod screens;
mod security;
mod smtp;
mod upstreams;
mod websocket;
