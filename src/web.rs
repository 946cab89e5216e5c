//! HTTP plumbing shared by the gateway's own answers: the body type, response builders,
//! the security headers every gateway response carries, and bounded form reading.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A year, as REQ-70 asks.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";
/// No inline script, nothing from elsewhere, never framed (REQ-58, REQ-23).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Headers for every response the gateway makes itself (REQ-22, REQ-58, REQ-59).
pub fn secure_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    let set = |h: &mut http::HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::STRICT_TRANSPORT_SECURITY, HSTS);
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set(
        h,
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
}

pub fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

pub fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r
}

/// 303 See Other to a path on this site.
pub fn see_other(location: &str) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub fn add_cookie(resp: &mut Response<Body>, set_cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(set_cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum FormError {
    TooLarge,
    Unreadable,
    WrongType,
}

/// Reads an `application/x-www-form-urlencoded` body of at most `limit` bytes.
pub async fn read_form<B>(req: http::Request<B>, limit: usize) -> Result<Form, FormError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(FormError::WrongType);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(FormError::TooLarge);
    }
    let body = Limited::new(req.into_body(), limit).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            FormError::TooLarge
        } else {
            FormError::Unreadable
        }
    })?;
    Ok(Form::parse(&body.to_bytes()))
}

/// A parsed form. A field sent twice is ambiguous, so `get` answers only for fields
/// sent once.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses an `application/x-www-form-urlencoded` body (what [`read_form`] reads).
    /// Total: any bytes give a form; invalid UTF-8 becomes U+FFFD.
    pub fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    /// Every field in the order sent (for tests and fuzzing).
    pub fn fields(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        let first = it.next()?;
        it.next().is_none().then_some(first.1.as_str())
    }
}

/// REQ-65: framing that two servers could read differently. hyper resolves some of
/// these cases on its own (it prefers chunked over Content-Length); the gateway
/// refuses them instead, so no upstream ever sees a request whose length is in doubt.
pub fn ambiguous_framing(headers: &http::HeaderMap) -> bool {
    let te: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !te.is_empty() && !cl.is_empty() {
        return true;
    }
    if cl.len() > 1 && cl.windows(2).any(|w| w[0] != w[1]) {
        return true;
    }
    let last_coding = te
        .last()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next());
    !te.is_empty() && !last_coding.is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
}

/// The value of a query parameter of a request URI.
pub fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// REQ-33: what `read_form` makes of a body: a field sent twice has no value, any
    /// bytes parse, and text that is not UTF-8 is replaced rather than refused.
    #[test]
    fn form_parse_is_total_and_answers_only_single_fields() {
        let f = Form::parse(b"csrf=a&code=123+456&csrf=b&user=%E5%B1%B1&x=%zz&&=v&bad=%FF");
        assert_eq!(f.get("csrf"), None, "sent twice: ambiguous");
        assert_eq!(f.get("code"), Some("123 456"));
        assert_eq!(f.get("user"), Some("山"));
        assert_eq!(f.get("x"), Some("%zz"));
        assert_eq!(f.get(""), Some("v"));
        assert_eq!(f.get("bad"), Some("\u{FFFD}"));
        assert_eq!(f.fields().len(), 7);
        assert!(Form::parse(b"").fields().is_empty());
    }
}
