//! The one normalized form of a request path (REQ-64). The routing decision (gateway
//! screen or upstream) and the forwarded request both use it, so no spelling of a path
//! can reach the upstream by looking different to the gateway.

/// The gateway's own screens live here; nothing under it is ever forwarded.
pub const RESERVED_PREFIX: &str = "/_kanmon/";

const MAX_PATH_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form, too long, an encoded `/`, `\` or NUL, or not UTF-8.
    Rejected,
}

impl NormalizedPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_reserved(&self) -> bool {
        self.0.starts_with(RESERVED_PREFIX) || self.0 == RESERVED_PREFIX.trim_end_matches('/')
    }

    /// The part after the reserved prefix, for routing among the gateway's screens.
    pub fn gateway_route(&self) -> Option<&str> {
        self.0.strip_prefix(RESERVED_PREFIX)
    }

    /// Decodes unreserved characters, upper-cases the remaining escapes, folds repeated
    /// slashes and resolves `.` and `..`; refuses what has no single meaning.
    pub fn parse(raw: &str) -> Result<NormalizedPath, PathError> {
        if !raw.starts_with('/') || raw.len() > MAX_PATH_BYTES || raw.contains('\\') {
            return Err(PathError::Rejected);
        }
        let mut segments: Vec<String> = Vec::new();
        let ends_with_slash = raw.ends_with('/') || raw.ends_with("/.") || raw.ends_with("/..");
        for seg in raw.split('/').skip(1) {
            let seg = decode_unreserved(seg)?;
            match seg.as_str() {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                _ => segments.push(seg),
            }
        }
        let mut out = String::with_capacity(raw.len());
        for s in &segments {
            out.push('/');
            out.push_str(s);
        }
        if out.is_empty() || (ends_with_slash && !segments.is_empty()) {
            out.push('/');
        }
        Ok(NormalizedPath(out))
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn decode_unreserved(seg: &str) -> Result<String, PathError> {
    let bytes = seg.as_bytes();
    let mut out = String::with_capacity(seg.len());
    let mut raw_decoded: Vec<u8> = Vec::with_capacity(seg.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::Rejected)?;
            let hex = std::str::from_utf8(hex).map_err(|_| PathError::Rejected)?;
            let b = u8::from_str_radix(hex, 16).map_err(|_| PathError::Rejected)?;
            if matches!(b, b'/' | b'\\' | 0) {
                return Err(PathError::Rejected);
            }
            raw_decoded.push(b);
            if is_unreserved(b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
            i += 3;
        } else {
            raw_decoded.push(bytes[i]);
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    // The fully decoded segment must be text: anything else means different things to
    // different servers.
    String::from_utf8(raw_decoded).map_err(|_| PathError::Rejected)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        NormalizedPath::parse(p).map(|p| p.0)
    }

    #[test]
    fn req64_spellings_of_the_reserved_prefix_normalize_to_it() {
        for p in [
            "/_kanmon/x",
            "/%5Fkanmon/x",
            "/%5fkanmon/x",
            "/a/../_kanmon/x",
            "//_kanmon/x",
            "/./_kanmon/x",
            "/%2e%2e/_kanmon/x",
        ] {
            let np = NormalizedPath::parse(p).unwrap();
            assert!(np.is_reserved(), "{p} -> {np:?}");
        }
        assert!(NormalizedPath::parse("/_kanmon").unwrap().is_reserved());
        assert!(!NormalizedPath::parse("/_kanmonx").unwrap().is_reserved());
    }

    #[test]
    fn req64_dot_segments_and_slashes() {
        assert_eq!(n("/").unwrap(), "/");
        assert_eq!(n("/a/b/../c").unwrap(), "/a/c");
        assert_eq!(n("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(n("/a//b/").unwrap(), "/a/b/");
        assert_eq!(n("/a/.").unwrap(), "/a/");
        assert_eq!(n("/%7Euser/%e3%81%82").unwrap(), "/~user/%E3%81%82");
        assert_eq!(n("/x;jsessionid=1").unwrap(), "/x;jsessionid=1");
    }

    #[test]
    fn req64_ambiguous_paths_are_rejected() {
        for p in [
            "/a%2Fb",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a%00",
            "/%ff",
            "/%zz",
            "/%4",
            "*",
            "http://x/",
        ] {
            assert_eq!(n(p), Err(PathError::Rejected), "{p}");
        }
        assert_eq!(n(&format!("/{}", "a".repeat(MAX_PATH_BYTES))), Err(PathError::Rejected));
    }
}
