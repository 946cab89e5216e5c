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
    /// Not origin-form, too long, an encoded `/`, `\` or NUL (or a raw `\` or NUL), or
    /// not UTF-8.
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

    /// Decodes unreserved characters, upper-cases the remaining escapes, escapes bytes
    /// outside printable ASCII, folds repeated slashes and resolves `.` and `..`;
    /// refuses what has no single meaning.
    pub fn parse(raw: &str) -> Result<NormalizedPath, PathError> {
        // A raw NUL is refused like an encoded one (`%00`), which is what it would
        // become.
        if !raw.starts_with('/') || raw.len() > MAX_PATH_BYTES || raw.contains(['\\', '\0']) {
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
            if bytes[i].is_ascii_graphic() {
                out.push(bytes[i] as char);
            } else {
                // Text outside printable ASCII (a configured `/café/`, say) takes the
                // form browsers send it in; pushing the byte as a char would turn
                // each byte of `é` into a character of its own.
                out.push_str(&format!("%{:02X}", bytes[i]));
            }
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

    /// Found by the property tests below and by the fuzz target `path`: raw
    /// non-ASCII text was pushed byte by byte as characters, so `/é` became `/Ã©`, which
    /// normalized to something else again, and a skip-auth prefix with such text never
    /// matched.
    #[test]
    fn req64_non_ascii_text_takes_its_escaped_form() {
        assert_eq!(n("/é").unwrap(), "/%C3%A9");
        assert_eq!(n("/caf%c3%a9/").unwrap(), n("/café/").unwrap());
        assert_eq!(n("/あ/b").unwrap(), "/%E3%81%82/b");
        assert_eq!(n(&n("/é/./x").unwrap()).unwrap(), "/%C3%A9/x", "idempotent");
        assert_eq!(n("/a b").unwrap(), "/a%20b");
    }

    /// Found by the fuzz target `path`: a raw NUL was escaped to `%00`, which is refused,
    /// so the normal form of an accepted path was not accepted itself.
    #[test]
    fn req64_a_raw_nul_is_refused_like_an_encoded_one() {
        assert_eq!(n("/%2e%2e/[k\0\0n/login"), Err(PathError::Rejected));
        assert_eq!(n("/a\0"), Err(PathError::Rejected));
        assert_eq!(
            n("/a\u{1}").unwrap(),
            "/a%01",
            "other control bytes keep their escaped form"
        );
        assert_eq!(n("/a%01").unwrap(), "/a%01");
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

/// Property tests (REQ-64): over paths built from the pieces that matter (dot segments
/// in every spelling, doubled slashes, escapes, the reserved prefix, non-ASCII text) and
/// over arbitrary text, the normal form is a fixed point with no `//`, no dot segment
/// and nothing but printable ASCII, and the reserved prefix is recognised in it.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "",
            ".",
            "..",
            "%2e",
            "%2E%2e",
            ".%2E",
            "a",
            "B",
            "_kanmon",
            "%5Fkanmon",
            "%5fKANMON",
            "%41",
            "%7e",
            "%7E",
            "~",
            "é",
            "%C3%A9",
            "%c3%a9",
            "あ",
            ";x=1",
            "%20",
            "%25",
            "%3F",
            "x%2",
            "%",
            "\u{0}",
            "\u{1}",
            " ",
        ])
    }

    fn path() -> impl Strategy<Value = String> {
        (prop::collection::vec(piece(), 0..8), any::<bool>())
            .prop_map(|(segs, trailing)| format!("/{}{}", segs.join("/"), if trailing { "/" } else { "" }))
    }

    fn check_normal_form(raw: &str, n: &NormalizedPath) -> Result<(), TestCaseError> {
        let s = n.as_str();
        prop_assert!(s.starts_with('/'), "{raw:?} → {s:?}");
        prop_assert!(!s.contains("//"), "{raw:?} → {s:?}");
        prop_assert!(s.split('/').all(|seg| seg != "." && seg != ".."), "{raw:?} → {s:?}");
        prop_assert!(
            s.bytes().all(|b| b.is_ascii_graphic()),
            "{raw:?} → {s:?}: only printable ASCII"
        );
        let again = NormalizedPath::parse(s);
        prop_assert_eq!(again.as_ref(), Ok(n), "{:?}: not idempotent", raw);
        prop_assert_eq!(
            n.is_reserved(),
            s == "/_kanmon" || s.starts_with("/_kanmon/"),
            "{:?}",
            raw
        );
        Ok(())
    }

    proptest! {
        #[test]
        fn req64_normal_form_is_a_fixed_point(raw in path()) {
            if let Ok(n) = NormalizedPath::parse(&raw) {
                check_normal_form(&raw, &n)?;
            }
        }

        #[test]
        fn req64_normal_form_of_any_text(raw in any::<String>()) {
            let raw = format!("/{raw}");
            if let Ok(n) = NormalizedPath::parse(&raw) {
                check_normal_form(&raw, &n)?;
            }
        }

        /// Decoding an unreserved character or folding a slash never changes the result.
        #[test]
        fn req64_equivalent_spellings_agree(segs in prop::collection::vec("[a-zA-Z0-9_~-]{1,6}", 1..5)) {
            let plain = format!("/{}", segs.join("/"));
            let encoded: String = plain
                .bytes()
                .map(|b| if b == b'/' { "//".to_owned() } else { format!("%{b:02x}") })
                .collect();
            prop_assert_eq!(NormalizedPath::parse(&encoded), NormalizedPath::parse(&plain));
            prop_assert_eq!(NormalizedPath::parse(&format!("/x/..{plain}/.")).map(|p| p.0), Ok(format!("{plain}/")));
        }
    }
}
