//! The random source, injected like the clock so tests can make it deterministic.

use std::sync::Arc;

use rand::TryRng;

pub trait Random: Send + Sync + 'static {
    fn fill(&self, buf: &mut [u8]);
}

pub type SharedRandom = Arc<dyn Random>;

/// The operating system's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRandom;

impl Random for SystemRandom {
    fn fill(&self, buf: &mut [u8]) {
        // Without OS randomness no secret can be made safely: stop rather than go on.
        rand::rngs::SysRng
            .try_fill_bytes(buf)
            .expect("the operating system's random number generator failed");
    }
}

/// `N` random bytes from a shared source.
pub fn random_bytes<const N: usize>(rng: &dyn Random) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill(&mut b);
    b
}
