//! The web console: static HTML, CSS and JavaScript embedded in the binary (no CDN, no
//! build step), talking to the admin API with the operator's basic credentials.

use bytes::Bytes;
use hyper::StatusCode;

use super::reply::{HttpResponse, text, with_type};

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const STYLE_CSS: &str = include_str!("console/style.css");

/// The asset at `path` (`/` and `/console` are the page itself).
pub(crate) fn page(path: &str) -> HttpResponse {
    let (body, content_type) = match path {
        "/" | "/console" | "/console/" | "/console/index.html" => {
            (INDEX_HTML, "text/html; charset=utf-8")
        }
        "/console/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/console/style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    with_type(
        StatusCode::OK,
        Bytes::from_static(body.as_bytes()),
        content_type,
    )
}
