//! G-8, REQ-74: the YAML configuration (`Config::parse`) never panics on any text: it
//! is a value or an error naming the file. What it accepts is consistent: skip-auth
//! prefixes are normalized paths outside the gateway's own, `localhost` is allowed.
#![no_main]

use std::path::Path;

use kanmon::Config;
use kanmon::auth::path::NormalizedPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/kanmon/config.yaml");
    match Config::parse(path, text) {
        Ok(c) => {
            assert!(c.allowed_hosts.iter().any(|h| h == "localhost"));
            for p in &c.upstream.skip_auth {
                let n = NormalizedPath::parse(p).expect("a normalized skip-auth prefix");
                assert_eq!(n.as_str(), p);
                assert!(!n.is_reserved());
            }
            assert!(c.session.idle_timeout_secs > 0 && c.session.absolute_timeout_secs > 0);
        }
        Err(e) => {
            assert_eq!(e.file, path);
            let _ = e.to_string();
        }
    }
});
