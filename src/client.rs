//! A minimal HTTP/1.1 client over one kept-alive connection (hyper), for `orders submit`
//! and the benchmark's load generator.

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// Where `orders serve` listens unless told otherwise.
pub const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:3000";

pub struct Connection {
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Connection> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).ok();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client connection closed");
            }
        });
        Ok(Connection {
            host: addr.to_string(),
            sender,
        })
    }

    /// The URL a command that talks to the server uses: the one given (`--url`,
    /// `ORDERS_URL`), else the address of the server running on `data_dir`, else the
    /// default address of `orders serve`.
    pub fn server_url(given: Option<String>, data_dir: &std::path::Path) -> String {
        given
            .or_else(|| crate::runtime::served_url(data_dir))
            .unwrap_or_else(|| DEFAULT_SERVER_URL.to_string())
    }

    /// A connection to a running `orders serve` at `url` (`http://HOST:PORT`); when
    /// nobody answers there, the error says what to check.
    pub async fn to_server(url: &str, needs: &str) -> anyhow::Result<Connection> {
        let addr = parse_base_url(url)?;
        Connection::open(addr).await.map_err(|e| {
            anyhow::anyhow!("{e:#}: is `orders serve` running at {url}? ({needs}; or pass --url)")
        })
    }

    pub async fn send(
        &mut self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> anyhow::Result<Reply> {
        // Defaults, unless the caller gives its own.
        let given = |name: &http::header::HeaderName| {
            headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name.as_str()))
        };
        let mut req = http::Request::builder().method(method).uri(path);
        if !given(&http::header::HOST) {
            req = req.header(http::header::HOST, &self.host);
        }
        if body.is_some() && !given(&http::header::CONTENT_TYPE) {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .context("building the request")?;
        self.sender.ready().await.context("connection not ready")?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .context("sending the request")?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading the response")?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// `http://host:port` (or `host:port`) to a socket address.
fn parse_base_url(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.replace("localhost", "127.0.0.1");
    authority
        .parse()
        .with_context(|| format!("`{url}` is not an http://HOST:PORT address"))
}
