//! Minimal request/response types the handlers work with (the server converts from/to hyper).

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::{Value, json};

/// A fully read request.
#[derive(Debug)]
pub(crate) struct Req {
    pub(crate) method: Method,
    /// Percent-decoded path.
    pub(crate) path: String,
    /// Raw query string.
    pub(crate) query_raw: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Req {
    pub(crate) fn new(
        method: Method,
        raw_path: &str,
        query_raw: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        let query = form_urlencoded::parse(query_raw.as_bytes())
            .into_owned()
            .collect();
        Self {
            method,
            path: percent_decode(raw_path),
            query_raw: query_raw.to_owned(),
            query,
            headers,
            body,
        }
    }

    /// Query parameter (name compared case-insensitively; first occurrence).
    pub(crate) fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn api_version(&self) -> Option<&str> {
        self.q("api-version")
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Media type of the body, lower case, without parameters.
    pub(crate) fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// Path segments (non-empty).
    pub(crate) fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }
}

/// Decodes `%XX` escapes (invalid escapes are kept literally).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response before conversion to hyper.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: body.to_string().into_bytes(),
        }
    }

    pub(crate) fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[must_use]
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub(crate) fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    /// `{"error":{"code","message"}}` — the ARM / MAA CloudError envelope.
    pub(crate) fn cloud_error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            &json!({"error": {"code": code, "message": message}}),
        )
        .header("x-ms-error-code", code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("/policies/AzureGuest%3Areset"),
            "/policies/AzureGuest:reset"
        );
        assert_eq!(percent_decode("/a%2"), "/a%2");
        assert_eq!(percent_decode("/a%zz/b"), "/a%zz/b");
        assert_eq!(percent_decode("%41"), "A");
    }
}
