//! Where a user may be sent after login: only a path on this site (REQ-61, G-2).

use percent_encoding::percent_decode_str;

use crate::auth::path::RESERVED_PREFIX;

/// A path (and query) on this site. Only [`SameSitePath::parse`] makes one, so holding
/// one means it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SameSitePath(String);

const MAX_LEN: usize = 2048;
/// Layers of percent-encoding looked through; a path encoded deeper is refused.
const MAX_DECODES: usize = 8;

impl SameSitePath {
    /// Accepts `/…` with no scheme, no authority (`//`, `/\`), no control characters,
    /// also after percent-decoding (repeatedly, until nothing changes, so no depth of
    /// encoding slips by).
    pub fn parse(raw: &str) -> Option<SameSitePath> {
        if raw.len() > MAX_LEN || !is_safe(raw) {
            return None;
        }
        // Decoded until nothing changes; more layers of encoding than any real path has
        // are refused rather than trusted.
        let mut decoded = raw.to_owned();
        let mut settled = false;
        for _ in 0..MAX_DECODES {
            let next = percent_decode_str(&decoded).decode_utf8().ok()?.into_owned();
            if !is_safe(&next) {
                return None;
            }
            if next == decoded {
                settled = true;
                break;
            }
            decoded = next;
        }
        if !settled {
            return None;
        }
        // The gateway's own screens are not a destination after login.
        if raw.starts_with(RESERVED_PREFIX) {
            return None;
        }
        Some(SameSitePath(raw.to_owned()))
    }

    pub fn root() -> SameSitePath {
        SameSitePath("/".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_safe(s: &str) -> bool {
    s.starts_with('/')
        && !s.starts_with("//")
        && !s.starts_with("/\\")
        && !s.chars().any(|c| c.is_control() || c == '\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn req61_only_same_site_paths() {
        for ok in ["/", "/anything", "/a/b?x=1&y=%20", "/caf%C3%A9"] {
            assert!(SameSitePath::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%252F%252Fevil.example",
            "javascript:alert(1)",
            "/%0d%0aSet-Cookie:x",
            "",
            "evil",
            "/_kanmon/logout",
        ] {
            assert!(SameSitePath::parse(bad).is_none(), "{bad}");
        }
    }

    /// Found by the property tests below and by the fuzz target `return_to`:
    /// only three layers of encoding were looked through, so a fourth hid
    /// `//evil.example`.
    #[test]
    fn req61_no_depth_of_encoding_hides_an_authority() {
        let mut encoded = "%2F".to_owned();
        for depth in 1..=12 {
            let raw = format!("/{encoded}evil.example");
            assert!(SameSitePath::parse(&raw).is_none(), "depth {depth}: {raw}");
            encoded = encoded.replacen('%', "%25", 1);
        }
        assert!(
            SameSitePath::parse("/%25252525252525252541").is_none(),
            "too deep to trust"
        );
        assert!(SameSitePath::parse("/a%2525b").is_some(), "a literal %25 is fine");
    }
}

/// Property tests (REQ-61): no spelling of an off-site target is accepted, however its
/// characters are percent-encoded, and what is accepted stays a same-site path through
/// every layer of decoding.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// `c` percent-encoded `depth` times (`/` → `%2F` → `%252F` …).
    fn encode(c: char, depth: usize) -> String {
        if depth == 0 {
            return c.to_string();
        }
        let mut buf = [0u8; 4];
        let mut s: String = c.encode_utf8(&mut buf).bytes().map(|b| format!("%{b:02X}")).collect();
        for _ in 1..depth {
            s = s.replace('%', "%25");
        }
        s
    }

    fn off_site() -> impl Strategy<Value = String> {
        let target = prop::sample::select(vec![
            "//evil.example",
            "/\\evil.example",
            "/\\/evil.example",
            "///evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/\r\nSet-Cookie:x",
            "/\tevil",
            "\\evil.example",
        ]);
        (target, prop::collection::vec(0usize..6, 24)).prop_map(|(t, depths)| {
            t.chars()
                .zip(depths.into_iter().chain(std::iter::repeat(0)))
                .map(|(c, d)| encode(c, d))
                .collect()
        })
    }

    fn fully_decoded(s: &str) -> Vec<u8> {
        let mut cur = s.as_bytes().to_vec();
        loop {
            let next: Vec<u8> = percent_encoding::percent_decode(&cur).collect();
            if next == cur {
                return cur;
            }
            cur = next;
        }
    }

    proptest! {
        #[test]
        fn req61_no_encoding_of_an_off_site_target_is_accepted(raw in off_site()) {
            prop_assert!(SameSitePath::parse(&raw).is_none(), "{raw}");
        }

        #[test]
        fn req61_what_is_accepted_decodes_to_a_same_site_path(
            raw in prop::collection::vec(
                prop::sample::select(vec!["/", "%2F", "%252F", "%25", "\\", "%5C", "a", ":", "%3A", "%0A", "?", "é", "%C3%A9", "%E3"]),
                1..10,
            )
        ) {
            let raw = raw.concat();
            if let Some(p) = SameSitePath::parse(&raw) {
                let d = fully_decoded(p.as_str());
                prop_assert!(d.starts_with(b"/") && !d.starts_with(b"//"), "{raw} → {d:?}");
                prop_assert!(!d.contains(&b'\\'), "{raw} → {d:?}");
                prop_assert!(!String::from_utf8_lossy(&d).chars().any(char::is_control), "{raw} → {d:?}");
            }
        }

        #[test]
        fn req61_plain_same_site_paths_are_kept(path in "(/[a-z0-9._~-]{1,8}){1,5}/?(\\?[a-z]=[a-z0-9]{0,6})?") {
            prop_assume!(!path.starts_with(RESERVED_PREFIX));
            prop_assert_eq!(SameSitePath::parse(&path).map(|p| p.0), Some(path.clone()));
        }
    }
}
