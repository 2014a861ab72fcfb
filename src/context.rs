//! What the library knows of the request it is serving: its id. The HTTP layer and the
//! console set it for each request; the audit log records it, so every staff action can be
//! traced to the request (and its log line) that made it.

tokio::task_local! {
    /// The id of the request being served.
    pub static REQUEST_ID: String;
}

/// The id of the request this task serves, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}
