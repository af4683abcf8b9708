#![allow(dead_code)]
//! Shared by the targets: a request from fuzz bytes. Line 1 is `METHOD URI`, the next lines
//! are `name: value` headers; whatever does not form a valid HTTP request is skipped (hyper
//! would have refused it before Kura saw it).

pub fn request(data: &[u8]) -> Option<http::request::Parts> {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next()?;
    let (method, uri) = first.split_once(' ').unwrap_or(("GET", first));
    let mut b = http::Request::builder()
        .method(http::Method::from_bytes(method.as_bytes()).ok()?)
        .uri(uri);
    for line in lines {
        if let Some((n, v)) = line.split_once(':') {
            let name = http::HeaderName::from_bytes(n.trim().as_bytes()).ok()?;
            let value = http::HeaderValue::from_bytes(v.trim().as_bytes()).ok()?;
            b = b.header(name, value);
        }
    }
    b.body(()).ok().map(|r| r.into_parts().0)
}

pub fn creds() -> kura_server::Credentials {
    kura_server::Credentials {
        access_key_id: "fuzz-ak".into(),
        access_key_secret: "fuzz-sk".into(),
    }
}
