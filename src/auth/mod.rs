//! Every security decision of the gateway, testable without HTTP: who may pass, which
//! code is right, which session is valid, which host and path are acceptable.

pub mod admin;
pub mod client;
pub mod csrf;
pub mod host;
pub mod password;
pub mod path;
pub mod random;
pub mod redirect;
pub mod reset;
pub mod seal;
pub mod session;
pub mod throttle;
pub mod totp;

pub use random::{Random, SharedRandom, SystemRandom};
