//! HTTP/2 negotiated by ALPN, as the API server's Go client does, next to HTTP/1.1 on the same
//! port, with the limits that apply to HTTP/2 connections.

mod common;

use common::{TestServer, review, serve};
use kybern_webhook::config::Limits;
use reqwest::Version;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const REQUIRE_APP: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-app
spec:
  validationFailureAction: Enforce
  rules:
    - name: check-app
      match:
        any:
          - resources:
              kinds: [Pod]
      validate:
        message: "every Pod needs an app label"
        pattern:
          metadata:
            labels:
              app: "?*"
"#;

fn pod(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
    })
}

/// A client that trusts only the server's CA, built by `tune`.
fn client(
    s: &TestServer,
    tune: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> reqwest::Client {
    let ca = s.running.ca_pem.as_deref().unwrap();
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30));
    tune(builder).build().unwrap()
}

/// POSTs a review; returns the protocol version and the `response` part.
async fn send(client: &reqwest::Client, s: &TestServer, review: &Value) -> (Version, Value) {
    let res = client
        .post(format!("{}/validate?timeout=10s", s.base))
        .json(review)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let version = res.version();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["response"]["uid"], review["request"]["uid"]);
    (version, body["response"].clone())
}

#[tokio::test]
async fn decisions_are_served_over_http2_and_http1_on_the_same_port() {
    let s = serve(&[("app.yaml", REQUIRE_APP)], Limits::default()).await;
    let good = review("CREATE", &pod("good", json!({"app": "a"})), &Value::Null);
    let bad = review("CREATE", &pod("bad", json!({})), &Value::Null);
    // Offering both by ALPN, as Go's client does, gets HTTP/2; so does prior knowledge.
    for h2 in [client(&s, |b| b), client(&s, |b| b.http2_prior_knowledge())] {
        let (version, r) = send(&h2, &s, &good).await;
        assert_eq!(version, Version::HTTP_2);
        assert_eq!(r["allowed"], true, "{r}");
        let (version, r) = send(&h2, &s, &bad).await;
        assert_eq!(version, Version::HTTP_2);
        assert_eq!(r["allowed"], false, "{r}");
        let message = r["status"]["message"].as_str().unwrap();
        assert!(message.contains("every Pod needs an app label"), "{r}");
    }
    let h1 = client(&s, |b| b.http1_only());
    let (version, r) = send(&h1, &s, &good).await;
    assert_eq!(version, Version::HTTP_11);
    assert_eq!(r["allowed"], true, "{r}");
    let (version, r) = send(&h1, &s, &bad).await;
    assert_eq!(version, Version::HTTP_11);
    assert_eq!(r["allowed"], false, "{r}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn concurrent_requests_share_one_http2_connection() {
    let s = serve(&[("app.yaml", REQUIRE_APP)], Limits::default()).await;
    let h2 = client(&s, |b| b.http2_prior_knowledge().pool_max_idle_per_host(1));
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (h2, s) = (h2.clone(), Arc::clone(&s));
            tokio::spawn(async move {
                let labels = if i % 2 == 0 {
                    json!({"app": "a"})
                } else {
                    json!({})
                };
                let rv = review("CREATE", &pod(&format!("p{i}"), labels), &Value::Null);
                let (version, r) = send(&h2, &s, &rv).await;
                assert_eq!(version, Version::HTTP_2);
                assert_eq!(r["allowed"], i % 2 == 0, "{r}");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let Ok(s) = Arc::try_unwrap(s) else {
        panic!("the server is still shared")
    };
    s.running.shutdown().await;
}

/// A TLS connection to the server that negotiated `h2`.
async fn h2_tls(s: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = s.running.ca_pem.clone().unwrap();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(s.running.local_addr)
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

#[tokio::test]
async fn an_http2_connection_that_sends_no_request_is_closed() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let s = serve(&[("app.yaml", REQUIRE_APP)], limits).await;
    let mut tls = h2_tls(&s).await;
    // Not even the preface: the server's SETTINGS may come, then the connection must end.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "an idle HTTP/2 connection was kept open");
    s.running.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_http2_connections_without_waiting_out_the_grace_period() {
    let s = serve(&[("app.yaml", REQUIRE_APP)], Limits::default()).await;
    let h2 = client(&s, |b| b.http2_prior_knowledge());
    let rv = review("CREATE", &pod("good", json!({"app": "a"})), &Value::Null);
    let (version, _) = send(&h2, &s, &rv).await;
    assert_eq!(version, Version::HTTP_2);
    let started = Instant::now();
    s.running.shutdown().await;
    // The default grace period is 20 s; GOAWAY ends an idle connection at once.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Catalogue item 4 (CVE-2023-44487, "rapid reset"): a client that opens streams and resets
/// them at once, as fast as it can, is cut off by the HTTP/2 stack, and other clients are
/// decided meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_flood_is_cut_off_and_others_are_decided() {
    let s = serve(&[("app.yaml", REQUIRE_APP)], Limits::default()).await;
    let tls = h2_tls(&s).await;
    let (mut flood, connection) = h2::client::handshake(tls).await.unwrap();
    let connection = tokio::spawn(connection);
    let body = serde_json::to_vec(&review("CREATE", &pod("p", json!({})), &Value::Null)).unwrap();
    let started = Instant::now();
    let mut resets = 0usize;
    while resets < 50_000 && started.elapsed() < Duration::from_secs(20) {
        let ready = match tokio::time::timeout(Duration::from_secs(5), flood.clone().ready()).await
        {
            Ok(Ok(r)) => r,
            _ => break,
        };
        flood = ready;
        let request = http::Request::post(format!("{}/validate", s.base))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        match flood.send_request(request, false) {
            Ok((_response, mut stream)) => {
                // Half the streams carry their body first: those reach the handler.
                if resets.is_multiple_of(2) {
                    let _ = stream.send_data(body.clone().into(), false);
                }
                stream.send_reset(h2::Reason::CANCEL);
                resets += 1;
            }
            Err(_) => break,
        }
    }
    // The stack ends the connection (GOAWAY) long before the flood would.
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    println!(
        "rapid reset: {resets} streams reset before the server ended the connection ({:?})",
        started.elapsed()
    );
    assert!(
        ended.is_ok(),
        "the flooding connection is still open after {resets} resets"
    );
    assert!(resets < 50_000, "{resets} resets were accepted");
    // Another client is decided.
    let h2 = client(&s, |b| b.http2_prior_knowledge());
    let rv = review("CREATE", &pod("bad", json!({})), &Value::Null);
    let (version, response) = send(&h2, &s, &rv).await;
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(response["allowed"], false);
    s.running.shutdown().await;
}

/// An HTTP/2 frame: 9-byte header (length, type, flags, stream) and payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Catalogue item 4 (CONTINUATION flood, CVE-2024-27316 and kin): a header block that never
/// ends, sent as CONTINUATION frames, is not buffered without end: the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_that_never_ends_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let s = serve(&[("app.yaml", REQUIRE_APP)], Limits::default()).await;
    let mut tls = h2_tls(&s).await;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    // HEADERS without END_HEADERS, then CONTINUATION frames without it, 16,000 bytes each:
    // 16 MB if the server took them all.
    tls.write_all(&frame(
        0x1,
        0,
        1,
        &[0x00, 0x03, b'x', b'-', b'a', 0x7f, 0xff, 0xff, 0x03],
    ))
    .await
    .unwrap();
    let chunk = frame(0x9, 0, 1, &[b'a'; 16_000]);
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < 1_000 {
        match tokio::time::timeout(Duration::from_secs(2), tls.write_all(&chunk)).await {
            Ok(Ok(())) => sent += 1,
            // Refused, or the server stopped reading: either way it is not taking the flood.
            _ => break,
        }
    }
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    println!(
        "CONTINUATION flood: {sent} frames of 16,000 bytes written, connection {} after {:?}",
        if ended.is_ok() { "closed" } else { "open" },
        started.elapsed()
    );
    assert!(
        ended.is_ok(),
        "the connection was kept open after {sent} CONTINUATION frames"
    );
    // Another client is decided.
    let h2 = client(&s, |b| b.http2_prior_knowledge());
    let rv = review("CREATE", &pod("bad", json!({})), &Value::Null);
    let (_, response) = send(&h2, &s, &rv).await;
    assert_eq!(response["allowed"], false);
    s.running.shutdown().await;
}
