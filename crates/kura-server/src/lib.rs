//! Kura's HTTP front. One request takes one straight path:
//! parse (addressing, query, headers) -> authenticate -> route -> authorize -> core call ->
//! render (OSS XML, headers, errors with request ids).

pub mod auth;
pub mod handlers;
pub mod render;
pub mod request;
pub mod s3;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

pub use auth::Credentials;
pub use handlers::State;

/// Largest read buffer per connection; it bounds request headers and each body frame.
pub const MAX_BUF: usize = 256 * 1024;

fn new_request_id() -> String {
    hex::encode_upper(rand::random::<[u8; 12]>())
}

pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<render::Resp, Infallible> {
    let request_id = new_request_id();
    let (parts, body) = req.into_parts();
    let is_head = parts.method == http::Method::HEAD;
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let ctx = request::parse(&parts, state.domain.as_deref());
    // The dialect is chosen per request: an AWS signature or x-amz-* headers mean S3.
    let s3 = ctx.as_ref().is_ok_and(s3::auth::is_s3);
    let body = request::HyperBody(body);
    let mut resp = match ctx {
        Ok(mut ctx) => {
            let authenticated = if s3 {
                s3::auth::authenticate(&ctx, &state.creds)
            } else {
                auth::authenticate(&ctx, &state.creds)
            };
            let result = match authenticated {
                Err(e) => Err(e),
                Ok(a) => {
                    ctx.payload = a.payload.clone();
                    if a.empty_headers_unsigned {
                        // Not covered by the signature, so they must not act.
                        ctx.headers
                            .retain(|(n, v)| !(n.starts_with("x-oss-") && v.trim().is_empty()));
                    }
                    if s3 {
                        s3::handlers::route(&state, &ctx, &a, body, &host).await
                    } else {
                        handlers::route(&state, &ctx, &a, body, &host).await
                    }
                }
            };
            match result {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(code = e.code.as_str(), method = %parts.method, uri = %parts.uri, s3, "request failed");
                    if s3 {
                        s3::handlers::error(&e, &request_id, Some(&ctx), is_head)
                    } else {
                        render::error(&e, &request_id, Some(&ctx), &host, is_head)
                    }
                }
            }
        }
        Err(e) => render::error(&e, &request_id, None, &host, is_head),
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        if s3 {
            h.insert("x-amz-request-id", v.clone());
            h.insert("x-amz-id-2", v);
        } else {
            h.insert("x-oss-request-id", v);
        }
    }
    h.insert(
        "server",
        HeaderValue::from_static(if s3 { "Kura" } else { "AliyunOSS" }),
    );
    Ok(resp)
}

/// Serves connections from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<State>) -> std::io::Result<()> {
    loop {
        let (stream, peer): (_, SocketAddr) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(state.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_BUF)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
