//! The API's documentation, served by every node: `GET /openapi.json` (the OpenAPI 3.1
//! document of `crate::api::openapi`) and `GET /docs` (Swagger UI, vendored in the binary:
//! nothing is downloaded at build or run time).
//!
//! Both are public, like the panel's page and the probes: they hold no data, only what the
//! binary was built with. The calls made from Swagger UI's "Try it out" pass the guard like
//! any other (its "Authorize" button sets the bearer token). `/docs` has its own
//! Content-Security-Policy: Swagger UI's scripts and styles from this node only.

use std::sync::{Arc, LazyLock};

use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::routes::{Route, at, at1};

/// The document, rendered once.
static DOCUMENT: LazyLock<String> = LazyLock::new(crate::api::openapi::json);

/// Swagger UI's settings: the document at `/openapi.json`.
static SWAGGER: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> =
    LazyLock::new(|| Arc::new(utoipa_swagger_ui::Config::from("/openapi.json")));

/// Swagger UI's page and files: its own scripts and styles (it sets inline styles on some
/// elements), images from here or `data:`, requests to this node only, no framing.
const DOCS_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

/// `GET /openapi.json`, `GET /docs` (a redirect to `/docs/`) and `GET /docs/{file}`.
pub fn routes() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let document = at(Route::OpenApi).map(|| {
        let mut reply = DOCUMENT.as_str().into_response();
        reply
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        reply
    });
    let index = at(Route::Docs)
        .and(warp::path::full())
        .map(|path: warp::path::FullPath| {
            // Swagger UI's page names its files relative to `/docs/`.
            if path.as_str().ends_with('/') {
                file("index.html")
            } else {
                let mut reply = StatusCode::MOVED_PERMANENTLY.into_response();
                reply
                    .headers_mut()
                    .insert("location", HeaderValue::from_static("/docs/"));
                reply
            }
        });
    let files = at1(Route::DocsFile).map(|name: String| file(&name));
    document.or(index).unify().or(files).unify()
}

/// One file of Swagger UI, or a 404 in the API's error shape.
fn file(name: &str) -> Response {
    let found = match utoipa_swagger_ui::serve(name, SWAGGER.clone()) {
        Ok(found) => found,
        Err(e) => {
            return super::ApiError::internal(format!("swagger ui: {e}")).reply();
        }
    };
    let Some(found) = found else {
        return super::ApiError::not_found("not_found", format!("no documentation file {name:?}"))
            .reply();
    };
    let mut reply = found.bytes.into_owned().into_response();
    let headers = reply.headers_mut();
    if let Ok(kind) = HeaderValue::from_str(&found.content_type) {
        headers.insert("content-type", kind);
    }
    if found.gzpipped {
        headers.insert("content-encoding", HeaderValue::from_static("gzip"));
    }
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(DOCS_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    reply
}
