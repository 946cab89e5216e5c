//! REQ-33, REQ-71: the gateway's form parser (`web::Form::parse`, what `read_form`
//! runs on every POST body) takes any bytes; a field sent twice is never answered,
//! and re-encoding the fields gives the same fields back. `web::query_param` reads
//! the same encoding from a request's query.
#![no_main]

use kanmon::web::{Form, query_param};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let form = Form::parse(data);
    for (name, value) in form.fields() {
        let count = form.fields().iter().filter(|(n, _)| n == name).count();
        match form.get(name) {
            Some(v) => assert!(count == 1 && v == value, "{name:?}"),
            None => assert!(count > 1, "{name:?} sent once but not found"),
        }
    }
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (n, v) in form.fields() {
        ser.append_pair(n, v);
    }
    let again = Form::parse(ser.finish().as_bytes());
    assert_eq!(again.fields(), form.fields(), "re-encoding changes the form");

    if let Ok(text) = std::str::from_utf8(data) {
        let uri = format!("/_kanmon/login?{text}");
        if let Ok(uri) = uri.parse::<http::Uri>() {
            let _ = query_param(&uri, "rd");
            let _ = query_param(&uri, "lang");
        }
    }
});
