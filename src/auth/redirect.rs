//! Where a user may be sent after login: only a path on this site (REQ-61, G-2).

use percent_encoding::percent_decode_str;

use crate::auth::path::RESERVED_PREFIX;

/// A path (and query) on this site. Only [`SameSitePath::parse`] makes one, so holding
/// one means it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SameSitePath(String);

const MAX_LEN: usize = 2048;

impl SameSitePath {
    /// Accepts `/…` with no scheme, no authority (`//`, `/\`), no control characters,
    /// also after percent-decoding (repeatedly, so double encoding does not slip by).
    pub fn parse(raw: &str) -> Option<SameSitePath> {
        if raw.len() > MAX_LEN || !is_safe(raw) {
            return None;
        }
        let mut decoded = raw.to_owned();
        for _ in 0..3 {
            let next = percent_decode_str(&decoded).decode_utf8().ok()?.into_owned();
            if !is_safe(&next) {
                return None;
            }
            if next == decoded {
                break;
            }
            decoded = next;
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
}
