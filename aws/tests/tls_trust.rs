//! The HTTPS client trusts exactly the roots it is given: a DynamoDB call to a TLS server
//! whose certificate comes from a private authority fails under Amazon Trust Services' roots
//! (the Lambda default) and succeeds with that authority as the bundle (`AWS_CA_BUNDLE`).
//!
//! `tls/` holds the test authority (`ca.pem`) and a `localhost` certificate and key it
//! signed, made once with `openssl req -x509 … -days 36500` (P-256); no test needs the
//! authority's key, so it was not kept.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use orders_aws::TrustRoots;
use orders_aws::clients::https_client;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CA: &str = include_str!("tls/ca.pem");
const CERT: &str = include_str!("tls/localhost.pem");
const KEY: &str = include_str!("tls/localhost.key");

/// A TLS server answering every request with an empty ListTables result; counts the
/// requests that got through the handshake.
async fn fake_dynamodb() -> (u16, Arc<AtomicUsize>) {
    let certs = CertificateDer::pem_slice_iter(CERT.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("test certificate");
    let key = PrivateKeyDer::from_pem_slice(KEY.as_bytes()).expect("test key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if read_request(&mut tls).await.is_some() {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = r#"{"TableNames":[]}"#;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (port, served)
}

/// Reads one HTTP/1.1 request (head and `content-length` body).
async fn read_request(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(());
        }
    }
}

async fn list_tables(port: u16, roots: &TrustRoots) -> Result<usize, String> {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client(roots))
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(format!("https://localhost:{port}"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&sdk)
        .list_tables()
        .send()
        .await
        .map(|out| out.table_names().len())
        .map_err(|e| DisplayErrorContext(e).to_string())
}

#[tokio::test]
async fn amazon_roots_refuse_another_authority_and_a_bundle_trusts_exactly_its_own() {
    let (port, served) = fake_dynamodb().await;

    let err = list_tables(port, &TrustRoots::AmazonTrustServices)
        .await
        .expect_err("a private authority is not Amazon's");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert_eq!(served.load(Ordering::SeqCst), 0, "no request got through");

    let bundle = TrustRoots::from_pem(CA).expect("the test authority");
    assert_eq!(list_tables(port, &bundle).await, Ok(0));
    assert_eq!(served.load(Ordering::SeqCst), 1);
}
