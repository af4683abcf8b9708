//! Kura's HTTP front. One request takes one straight path, the same for both dialects:
//! parse (`request`) -> dialect (`op::dialect`) -> authenticate (`auth`) -> classify into one
//! [`op::Operation`] (`op`) -> authorize from one table (`authz`) -> execute and render in the
//! dialect (`oss`, `s3`) -> errors rendered in the dialect, with request ids.

pub mod auth;
pub mod authz;
pub mod common;
pub mod exec;
pub mod op;
pub mod oss;
pub mod request;
pub mod response;
pub mod s3;
mod timed_io;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use kura_core::{Kura, Result};
use tokio::net::TcpListener;

pub use auth::Credentials;
use op::Dialect;
use response::Resp;

/// What every request shares.
pub struct State {
    pub kura: Arc<Kura>,
    pub creds: Credentials,
    /// Virtual-host addressing for `<bucket>.<domain>`.
    pub domain: Option<String>,
}

/// Largest read buffer per connection; it bounds request headers and each body frame.
pub const MAX_BUF: usize = 256 * 1024;

fn new_request_id() -> String {
    hex::encode_upper(rand::random::<[u8; 12]>())
}

/// Authenticate, classify, authorize, execute: everything after parsing.
async fn pipeline(
    state: &State,
    ctx: &mut request::Ctx,
    dialect: Dialect,
    body: request::HyperBody,
    host: &str,
) -> Result<Resp> {
    let authenticated = auth::authenticate(dialect, ctx, &state.creds)?;
    ctx.payload = authenticated.payload.clone();
    if authenticated.empty_headers_unsigned {
        // Not covered by the signature, so they must not act.
        ctx.headers
            .retain(|(n, v)| !(n.starts_with("x-oss-") && v.trim().is_empty()));
    }
    let operation = op::classify(dialect, ctx)?;
    authz::authorize(&state.kura, &authenticated.principal, operation, ctx.bucket.as_deref()).await?;
    match dialect {
        Dialect::Oss => oss::handlers::execute(state, ctx, operation, &authenticated.principal, body, host).await,
        Dialect::S3 => s3::handlers::execute(state, ctx, operation, &authenticated, body, host).await,
    }
}

pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> std::result::Result<Resp, Infallible> {
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
    let dialect = ctx.as_ref().map_or(Dialect::Oss, op::dialect);
    let (body, body_read) = request::HyperBody::new(body);
    let mut resp = match ctx {
        Ok(mut ctx) => match pipeline(&state, &mut ctx, dialect, body, &host).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(code = e.code.as_str(), method = %parts.method, uri = %parts.uri, ?dialect, "request failed");
                let mut r = match dialect {
                    Dialect::S3 => s3::handlers::error(&e, &request_id, Some(&ctx), is_head),
                    Dialect::Oss => oss::render::error(&e, &request_id, Some(&ctx), &host, is_head),
                };
                if e.code == kura_core::Code::ServiceUnavailable {
                    // The metadata database is back within seconds when it restarts.
                    response::set(&mut r, "retry-after", "1");
                }
                r
            }
        },
        Err(e) => match dialect {
            Dialect::S3 => s3::handlers::error(&e, &request_id, None, is_head),
            Dialect::Oss => oss::render::error(&e, &request_id, None, &host, is_head),
        },
    };
    let s3 = dialect == Dialect::S3;
    let h = resp.headers_mut();
    // An answer given before the body was read (a refusal, or a client that sent
    // `Expect: 100-continue` and was never told to go on) ends the connection: the unread
    // body must not be taken for the next request.
    if !body_read.load(std::sync::atomic::Ordering::Relaxed) {
        h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
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

/// Connection limits of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Connections served at once; past this, a new connection gets 503 and is closed.
    pub max_connections: usize,
    /// How long a response write may wait for the client to read. A reader that stops
    /// reading loses its connection after this, which ends its stream and releases the blobs
    /// it leased (an idle request body already ends after [`request::BODY_IDLE_TIMEOUT`]).
    pub write_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 512,
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// The answer to a connection over the limit: read what headers arrive within a second (so
/// the client is not reset mid-request where avoidable), answer 503 with Retry-After, close.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 4096];
    // Only the last bytes are kept, to spot the blank line that ends the headers.
    let mut tail = Vec::with_capacity(8);
    let mut read = 0usize;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            read += n;
            tail.extend_from_slice(&buf[..n]);
            let ended = tail.windows(4).any(|w| w == b"\r\n\r\n");
            let keep = tail.len().saturating_sub(3);
            tail.drain(..keep);
            if ended || read > MAX_BUF {
                break;
            }
        }
    })
    .await;
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ServiceUnavailable</Code>\
                <Message>The server is at its connection limit; retry shortly.</Message></Error>";
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Serves connections from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<State>, opts: ServeOptions) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(opts.max_connections));
    // Refusals are bounded too: past these, an extra connection is dropped at once.
    let refusals = Arc::new(tokio::sync::Semaphore::new(64));
    loop {
        let (stream, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE) or buffers: a flood must not end the
                // server. Wait for connections to close, then accept again.
                tracing::warn!(error = %e, "accept failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = opts.max_connections, "connection limit reached; refusing");
            if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let _refusal = refusal;
                    refuse(stream).await;
                });
            }
            continue;
        };
        let state = state.clone();
        let write_timeout = opts.write_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req| handle(state.clone(), req));
            let io = timed_io::TimedIo::new(stream, write_timeout);
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_BUF)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(io), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
