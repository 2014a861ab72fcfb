//! Request extractors that turn every rejection into problem+json, in the order the API
//! promises: who calls (401, 429, 403) before what they send (400, 422). Handlers take the
//! body as [`RawBody`] and parse it with [`RawBody::parse`] only after authorization, and
//! every parse error names the field and says what is wrong in words.

use super::AppState;
use super::error::ApiError;
use super::rate_limit::Client;
use crate::auth::Authenticated;
use crate::domain::{Actor, UserRole};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

pub use axum::Json;

/// The authenticated caller, within its rate limit.
pub struct Caller(pub Authenticated);

impl Caller {
    pub fn actor(&self) -> Actor {
        self.0.user.actor()
    }

    pub fn is_staff(&self) -> bool {
        self.0.user.role == UserRole::Staff
    }
}

fn client_address(parts: &Parts) -> Client {
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    Client::Address(ip)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = match bearer_token(parts) {
            Ok(token) => token,
            Err(err) => {
                state
                    .limiter
                    .check(client_address(parts))
                    .map_err(ApiError::rate_limited)?;
                return Err(err);
            }
        };
        match state.ordo.authenticate(token).await {
            Ok(who) => {
                state
                    .limiter
                    .check(Client::Token(who.token_id))
                    .map_err(ApiError::rate_limited)?;
                Ok(Caller(who))
            }
            Err(err) => {
                state
                    .limiter
                    .check(client_address(parts))
                    .map_err(ApiError::rate_limited)?;
                Err(err.into())
            }
        }
    }
}

fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer <token>"))
}

/// A staff caller; anyone else is refused with 403 before the request is read further.
pub struct Staff(pub Authenticated);

impl Staff {
    pub fn actor(&self) -> Actor {
        self.0.user.actor()
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(who) = Caller::from_request_parts(parts, state).await?;
        if who.user.role != UserRole::Staff {
            return Err(ApiError::forbidden("only staff may use this endpoint"));
        }
        Ok(Staff(who))
    }
}

/// The request body, unread: parse it with [`RawBody::parse`] once the caller is known to
/// be allowed.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(is_json_content_type);
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("the body is larger than {} bytes", super::BODY_LIMIT),
                    )
                } else {
                    ApiError::bad_request("body", "the body could not be read")
                }
            })?;
        if json != Some(true) && !is_blank(&bytes) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        Ok(RawBody(bytes))
    }
}

fn is_json_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

impl RawBody {
    /// A required JSON body.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if is_blank(&self.0) {
            return Err(ApiError::bad_request(
                "body",
                "required: send a JSON object with Content-Type: application/json",
            ));
        }
        not_an_array(&self.0)?;
        parse_json(&self.0)
    }

    /// An optional JSON body: `None` when empty; when sent, it must be the object (not
    /// `null`).
    pub fn parse_optional<T: DeserializeOwned>(&self) -> Result<Option<T>, ApiError> {
        if is_blank(&self.0) {
            return Ok(None);
        }
        not_an_array(&self.0)?;
        parse_json::<T>(&self.0).map(Some)
    }
}

/// Every request body is a JSON object. serde would also read an object's fields from an
/// array of its values (`[null, null]`), which no client means and the schema does not allow.
fn not_an_array(bytes: &[u8]) -> Result<(), ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Err(ApiError::validation(
            "body",
            "must be a JSON object, not an array",
        )),
        _ => Ok(()),
    }
}

/// Parses a JSON document: syntax errors are 400, wrong shapes and values 422, each with
/// the field's path and what is wrong in words.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut de);
    if parsed.is_ok()
        && let Err(err) = de.end()
    {
        return Err(ApiError::bad_request(
            "body",
            format!(
                "the body is not valid JSON: something follows the value (line {}, column {})",
                err.line(),
                err.column()
            ),
        ));
    }
    parsed.map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let (field, message) = in_words(&path, &inner.to_string());
                ApiError::validation(&field, message)
            }
            _ => ApiError::bad_request(
                "body",
                format!(
                    "the body is not valid JSON (line {}, column {})",
                    inner.line(),
                    inner.column()
                ),
            ),
        }
    })
}

/// Turns a serde message at `path` into (field, what is wrong), never quoting the library.
pub fn in_words(path: &str, message: &str) -> (String, String) {
    let message = strip_position(message);
    let join = |name: &str| {
        if path.is_empty() || path == "." || path == "?" {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let here = if path.is_empty() || path == "." || path == "?" {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    if let Some(name) = quoted_after(message, "missing field ") {
        return (join(&name), "required".to_owned());
    }
    if let Some(name) = quoted_after(message, "unknown field ") {
        let expected = expected_list(message);
        let what = if expected.is_empty() {
            "unknown field; this object takes no fields".to_owned()
        } else {
            format!("unknown field; expected one of: {expected}")
        };
        // The path already ends at the unknown field.
        let field = if path == name || path.ends_with(&format!(".{name}")) {
            path.to_owned()
        } else {
            join(&name)
        };
        return (field, what);
    }
    if let Some(name) = quoted_after(message, "duplicate field ") {
        return (join(&name), "given more than once".to_owned());
    }
    if quoted_after(message, "unknown variant ").is_some() {
        return (here, format!("must be one of: {}", expected_list(message)));
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        if got == "null" {
            return (
                here,
                format!("must not be null; expected {}", expected_in_words(expected)),
            );
        }
        return (here, format!("must be {}", expected_in_words(expected)));
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        let expected = rest.split_once(", expected ").map_or("", |(_, e)| e);
        return (here, format!("must be {}", expected_in_words(expected)));
    }
    if message.starts_with("invalid length") {
        if message.contains("expected struct") {
            return (here, "must be an object".to_owned());
        }
        return (here, "has the wrong number of elements".to_owned());
    }
    if message.contains("out of range") || message.contains("number too large") {
        return (here, "is out of range".to_owned());
    }
    (here, "is not valid here".to_owned())
}

fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    let rest = rest.strip_prefix('`')?;
    let end = rest.find('`')?;
    Some(rest[..end].to_owned())
}

/// "expected one of `a`, `b`" → "a, b".
fn expected_list(message: &str) -> String {
    let Some((_, list)) = message.split_once("expected ") else {
        return String::new();
    };
    list.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, name)| name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn expected_in_words(expected: &str) -> String {
    let expected = expected.trim();
    let words = match expected {
        // "a JSON number": the whole-number fields read a number first.
        "i8" | "i16" | "i32" | "i64" | "an integer" | "isize" | "a JSON number" => "a whole number",
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, zero or more",
        "f32" | "f64" | "a number" => "a number",
        "a string" | "a borrowed string" | "string" | "a character" => "a string",
        "a boolean" | "bool" => "true or false",
        "a sequence" => "a list",
        "a map" | "unit" => "an object",
        "option" => "a value or null",
        _ if expected.starts_with("struct ") || expected.starts_with("a map") => "an object",
        _ if expected.starts_with("enum ") || expected.contains("variant") => {
            "one of the listed values"
        }
        _ if expected.starts_with("a sequence") || expected.starts_with("tuple") => "a list",
        _ => return format!("a valid value ({})", expected.replace('`', "")),
    };
    words.to_owned()
}

/// `axum::extract::Path` for one id. A path whose id is not a number names nothing: 404.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let nothing = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "nothing has this id: ids are whole numbers",
            )
        };
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| nothing())?;
        raw.parse::<i64>().map(Id).map_err(|_| nothing())
    }
}

/// Query parameters, with worded rejections naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|err| {
                let path = err.path().to_string();
                let (field, message) = in_words(&path, &err.into_inner().to_string());
                let field = if field == "body" {
                    "query".to_owned()
                } else {
                    field
                };
                let message = if message == "is not valid here" {
                    "is not valid".to_owned()
                } else {
                    message
                };
                ApiError::bad_request(&field, message)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Line {
        product_id: i64,
        quantity: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        items: Vec<Line>,
        carrier: String,
        fast: Option<bool>,
    }

    fn error(json: &str) -> (u16, String, String) {
        let err = parse_json::<Body>(json.as_bytes()).unwrap_err();
        (
            err.status().as_u16(),
            err.field().unwrap_or("").to_owned(),
            err.detail().to_owned(),
        )
    }

    #[test]
    fn a_body_is_an_object_never_an_array() {
        #[derive(Debug, Default, serde::Deserialize)]
        #[allow(dead_code)]
        struct Optional {
            name: Option<String>,
            expires_in: Option<String>,
        }
        let body = RawBody(axum::body::Bytes::from_static(b" [null, null]"));
        let err = body.parse_optional::<Optional>().unwrap_err();
        assert_eq!(
            (err.status().as_u16(), err.field()),
            (422, Some("body")),
            "{}",
            err.detail()
        );
        assert_eq!(body.parse::<Optional>().unwrap_err().status().as_u16(), 422);
        let object = RawBody(axum::body::Bytes::from_static(b"{}"));
        assert!(object.parse_optional::<Optional>().unwrap().is_some());
        assert!(
            RawBody(axum::body::Bytes::new())
                .parse_optional::<Optional>()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn errors_name_the_field_in_words() {
        assert_eq!(
            error(r#"{"items": []}"#),
            (422, "carrier".into(), "required".into())
        );
        assert_eq!(
            error(r#"{"items": [{"product_id": 1}], "carrier": "x"}"#),
            (422, "items[0].quantity".into(), "required".into())
        );
        assert_eq!(
            error(r#"{"items": [{"product_id": "a", "quantity": 1}], "carrier": "x"}"#),
            (
                422,
                "items[0].product_id".into(),
                "must be a whole number".into()
            )
        );
        assert_eq!(
            error(r#"{"items": [{"product_id": 1, "quantity": -1}], "carrier": "x"}"#),
            (
                422,
                "items[0].quantity".into(),
                "must be a whole number, zero or more".into()
            )
        );
        let (status, field, detail) = error(r#"{"items": [], "carrier": "x", "colour": 1}"#);
        assert_eq!((status, field.as_str()), (422, "colour"));
        assert!(
            detail.starts_with("unknown field; expected one of: items, carrier"),
            "{detail}"
        );
        assert_eq!(
            error(r#"{"items": [], "carrier": null}"#).2,
            "must not be null; expected a string"
        );
        assert_eq!(
            error(r#"{"items": [], "carrier": "x", "fast": 3}"#).2,
            "must be true or false"
        );
        let (status, field, detail) = error(r#"{"items": ["#);
        assert_eq!((status, field.as_str()), (400, "body"));
        assert!(detail.starts_with("the body is not valid JSON"), "{detail}");
        assert_eq!(error("[]").2, "must be an object");
        assert_eq!(error(r#"{"items": [], "carrier": "x"} x"#).0, 400);
    }

    #[test]
    fn no_library_words_leak() {
        for json in [
            r#"{}"#,
            r#"{"items": 1}"#,
            r#"{"items": [], "carrier": 5}"#,
            "7",
            "null",
        ] {
            let (_, _, detail) = error(json);
            assert!(
                !detail.contains('`') && !detail.contains("line "),
                "{json}: {detail}"
            );
        }
    }
}
