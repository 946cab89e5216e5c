//! The machine's raw password-hashing rate: argon2id with the gateway's parameters, one
//! thread per core, each reusing its memory block as the gateway's workers do.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use kanmon::auth::password::{M_COST_KIB, P_COST, T_COST};

/// Hashes per second over all threads for about `secs`.
pub fn hashes_per_sec(threads: usize, secs: f64) -> f64 {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, Some(32)).expect("the gateway's parameters are valid");
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (params, start) = (params.clone(), start.clone());
            std::thread::spawn(move || {
                let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                let mut memory = vec![Block::default(); params.block_count()];
                let mut out = [0u8; 32];
                let salt = [i as u8; 16];
                let mut hash = |n: u64| {
                    argon
                        .hash_password_into_with_memory(&n.to_le_bytes(), &salt, &mut out, &mut memory)
                        .expect("hashing with valid parameters");
                };
                hash(0); // the memory is touched once before timing, as in a warm worker
                start.wait();
                let began = Instant::now();
                let until = began + Duration::from_secs_f64(secs);
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    hash(n);
                }
                n as f64 / began.elapsed().as_secs_f64()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
}
