//! The server under hostile load, over real sockets: idle and slow connections beyond the
//! connection cap, and many large reviews at once.

mod common;

use common::{review, serve};
use kybern_webhook::config::Limits;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUIRE_TEAM: &str = r#"
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-team
spec:
  validationFailureAction: Enforce
  rules:
    - name: check-team
      match:
        any:
          - resources:
              kinds: [Pod]
      validate:
        message: "every Pod needs a team label"
        pattern:
          metadata:
            labels:
              team: "?*"
"#;

fn pod(name: &str, team: Option<&str>) -> Value {
    let labels = team.map_or(json!({}), |t| json!({"team": t}));
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
    })
}

/// A real client with a deadline like the API server's webhook timeout.
fn impatient(s: &common::TestServer) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(s.running.ca_pem.as_deref().unwrap().as_bytes())
                .unwrap(),
        )
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn decide(client: &reqwest::Client, base: &str, review: &Value) -> Value {
    let res = client
        .post(format!("{base}/validate"))
        .json(review)
        .send()
        .await
        .expect("the request was not answered within the client's timeout");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["response"].clone()
}

/// The soft limit on open files (`Max open files` in /proc/self/limits), 1024 if unknown.
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_the_cap_do_not_lock_out_a_real_request() {
    // Deadlines at their defaults (10 s): what lets the request in is that idle connections
    // give way, not that they time out.
    let mut limits = Limits::default();
    // Client and server sockets share this process's descriptors: where the limit is low, a
    // smaller cap shows the same thing.
    limits.max_connections = limits.max_connections.min(open_files_limit() / 3);
    let cap = limits.max_connections;
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], limits).await;
    let mut idle = Vec::new();
    // More silent TCP connections than the cap, some with a ClientHello's first bytes.
    for i in 0..cap + 76 {
        let mut tcp = tokio::net::TcpStream::connect(s.running.local_addr)
            .await
            .unwrap();
        if i % 4 == 0 {
            let _ = tcp.write_all(&[0x16, 0x03, 0x01]).await;
        }
        idle.push(tcp);
    }
    // Give the accept loop time to take them all in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = impatient(&s);
    let denied = decide(
        &client,
        &s.base,
        &review("CREATE", &pod("a", None), &Value::Null),
    )
    .await;
    assert_eq!(denied["allowed"], false);
    assert!(
        denied["status"]["message"]
            .as_str()
            .unwrap()
            .contains("every Pod needs a team label")
    );
    // A fresh connection (no keep-alive reuse) gets through as well.
    let client = impatient(&s);
    let allowed = decide(
        &client,
        &s.base,
        &review("CREATE", &pod("b", Some("a")), &Value::Null),
    )
    .await;
    assert_eq!(allowed["allowed"], true);
    drop(idle);
    s.running.shutdown().await;
}

async fn raw_tls(s: &common::TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let ca = s.running.ca_pem.clone().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(s.running.local_addr)
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Sends a review's headers, waits, then its body; returns the status line.
async fn slow_body(
    mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    body: Vec<u8>,
) -> String {
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    tls.write_all(&body).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_serving_requests_are_not_cut_for_newcomers() {
    // Two slots, both held by clients in the middle of a request (headers sent, body late).
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], limits).await;
    let body =
        serde_json::to_vec(&review("CREATE", &pod("slow", Some("a")), &Value::Null)).unwrap();
    let a = tokio::spawn(slow_body(raw_tls(&s).await, body.clone()));
    let b = tokio::spawn(slow_body(raw_tls(&s).await, body.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A newcomer finds both slots serving: it is refused, the two in flight are answered.
    let newcomer = impatient(&s)
        .get(format!("{}/health/liveness", s.base))
        .send()
        .await;
    assert!(newcomer.is_err(), "a third connection was let in");
    assert_eq!(a.await.unwrap(), "HTTP/1.1 200 OK");
    assert_eq!(b.await.unwrap(), "HTTP/1.1 200 OK");
    s.running.shutdown().await;
}

/// A Pod of `n` small containers (195,000 make a 6.4 MiB review).
fn many_containers(n: usize) -> Value {
    let containers: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("c{i}"), "image": "nginx"}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "big", "namespace": "shop", "labels": {"team": "a"}},
        "spec": {"containers": containers}
    })
}

/// Sends every body at once; returns each answer's status and body.
async fn burst(s: &common::TestServer, bodies: Vec<Vec<u8>>) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let client = s.client.clone();
            // The longest webhook timeout: unoptimised test builds evaluate large reviews slowly.
            let url = format!("{}/validate?timeout=30s", s.base);
            tokio::spawn(async move {
                let res = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                (status, res.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Default limits, but bodies may take as long as the longest webhook timeout to arrive (a test
/// build's TLS is slow on a busy machine).
fn patient() -> Limits {
    Limits {
        body_read_timeout: Duration::from_secs(30),
        ..Limits::default()
    }
}

fn vm_hwm_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_reviews_of_a_pod_with_195000_containers_are_refused_within_the_memory_budget() {
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], patient()).await;
    let big = many_containers(195_000);
    let body = serde_json::to_vec(&review("CREATE", &big, &Value::Null)).unwrap();
    assert!(body.len() > 6 * 1024 * 1024, "{} bytes", body.len());
    drop(big);
    let mut too_large = 0;
    for (status, answer) in burst(&s, vec![body; 8]).await {
        // Each would need ~230 MiB once decoded: more than the whole budget, refused undecoded
        // (or, while other bodies fill the body budget, refused for want of room to read it).
        assert_eq!(status, 503, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("more than the server's budget of 128 MiB")
                || message.contains("request bodies budget (64 MiB) is in use"),
            "{message}"
        );
        too_large += usize::from(message.contains("more than the server's budget"));
    }
    assert!(too_large >= 1);
    // The server still decides.
    let r = s
        .send(
            "/validate",
            &review("CREATE", &pod("a", None), &Value::Null),
        )
        .await;
    assert_eq!(r["allowed"], false);
    println!(
        "test process VmHWM (client and server): {} MiB",
        vm_hwm_mib()
    );
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_reviews_beyond_the_budget_wait_their_turn_or_get_503_with_the_reason() {
    // Room for one decoded 6.4 MiB UPDATE at a time (~13 MiB estimated each).
    let limits = Limits {
        memory_budget_bytes: 20 * 1024 * 1024,
        ..patient()
    };
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], limits).await;
    let mut old = pod("big", Some("a"));
    old["metadata"]["annotations"] = json!({"blob": "y".repeat(3_300_000)});
    let body = serde_json::to_vec(&review("UPDATE", &old, &old)).unwrap();
    assert!(body.len() > 6 * 1024 * 1024);
    let answers = burst(&s, vec![body; 8]).await;
    let mut decided = 0;
    for (status, answer) in &answers {
        match status {
            200 => {
                assert_eq!(answer["response"]["allowed"], true, "{answer}");
                decided += 1;
            }
            503 => {
                let message = answer["error"]["message"].as_str().unwrap();
                assert!(message.contains("budget"), "{message}");
            }
            other => panic!("status {other}: {answer}"),
        }
    }
    assert!(decided >= 1, "none decided: {answers:?}");
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_legitimate_6_4_mib_updates_at_once_are_all_decided() {
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], patient()).await;
    let mut old = pod("big", Some("a"));
    old["metadata"]["annotations"] = json!({"blob": "y".repeat(3_300_000)});
    let body = serde_json::to_vec(&review("UPDATE", &old, &old)).unwrap();
    for (status, answer) in burst(&s, vec![body; 8]).await {
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }
    s.running.shutdown().await;
}

/// A ClientHello record offering `version` and only `suites`, without extensions.
fn client_hello(version: [u8; 2], suites: &[[u8; 2]]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    let suite_bytes: Vec<u8> = suites.iter().flatten().copied().collect();
    body.extend_from_slice(&u16::try_from(suite_bytes.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&suite_bytes);
    body.extend_from_slice(&[1, 0]);
    let len = body.len();
    let mut handshake = vec![1, 0, (len >> 8) as u8, len as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn old_tls_versions_and_weak_cipher_suites_are_refused() {
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], Limits::default()).await;
    const RSA_3DES_EDE_CBC_SHA: [u8; 2] = [0x00, 0x0a];
    const RSA_AES128_CBC_SHA: [u8; 2] = [0x00, 0x2f];
    const RSA_RC4_128_SHA: [u8; 2] = [0x00, 0x05];
    let hellos = [
        ("TLS 1.0", client_hello([3, 1], &[RSA_AES128_CBC_SHA])),
        ("TLS 1.1", client_hello([3, 2], &[RSA_AES128_CBC_SHA])),
        (
            "TLS 1.2 with 3DES, RC4 and CBC only",
            client_hello(
                [3, 3],
                &[RSA_3DES_EDE_CBC_SHA, RSA_RC4_128_SHA, RSA_AES128_CBC_SHA],
            ),
        ),
    ];
    for (what, hello) in hellos {
        let mut tcp = tokio::net::TcpStream::connect(s.running.local_addr)
            .await
            .unwrap();
        tcp.write_all(&hello).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
        // An alert record (content type 21), never a ServerHello (handshake record, type 22).
        assert_eq!(buf.first(), Some(&0x15), "{what}: {buf:02x?}");
    }
    s.running.shutdown().await;
}

/// POSTs raw bytes as JSON; returns the status and the body.
async fn post_raw(s: &common::TestServer, body: Vec<u8>) -> (u16, Value) {
    let res = s
        .client
        .post(format!("{}/validate", s.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_bytes_and_odd_values_get_a_clear_answer() {
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], Limits::default()).await;
    let good =
        serde_json::to_string(&review("CREATE", &pod("a", Some("x")), &Value::Null)).unwrap();
    let mut invalid_utf8 = good.clone().into_bytes();
    let at = good.find("nginx").unwrap();
    invalid_utf8[at] = 0xff;
    // (what, body, status): refusals are 4xx with a message, never a 5xx or a dropped connection.
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("invalid UTF-8", invalid_utf8, 417),
        (
            "a lone UTF-16 surrogate",
            good.replace("nginx", "\\ud800").into_bytes(),
            417,
        ),
        (
            "truncated JSON",
            good.as_bytes()[..good.len() / 2].to_vec(),
            417,
        ),
        (
            "a number beyond f64 (1e400)",
            good.replace("\"labels\"", "\"n\":1e400,\"labels\"").into_bytes(),
            417,
        ),
        // Legitimate oddities are decided.
        (
            "a NUL character in a string",
            good.replace("nginx", "ngi\\u0000nx").into_bytes(),
            200,
        ),
        (
            "integers at and past 2^63",
            good.replace("\"labels\"", "\"a\":9223372036854775808,\"b\":18446744073709551616,\"c\":-9223372036854775809,\"d\":-0,\"labels\"")
                .into_bytes(),
            200,
        ),
        (
            "a 64 KiB uid",
            good.replacen(
                "\"uid\":\"",
                &format!("\"uid\":\"{}", "u".repeat(64 * 1024)),
                1,
            )
            .into_bytes(),
            200,
        ),
    ];
    for (what, body, want) in cases {
        let (status, answer) = post_raw(&s, body).await;
        assert_eq!(status, want, "{what}: {answer}");
        if want == 200 {
            assert_eq!(answer["response"]["allowed"], true, "{what}: {answer}");
            assert!(answer["response"]["uid"].as_str().unwrap().starts_with("u"));
        } else {
            assert!(
                !answer["error"]["message"].as_str().unwrap().is_empty(),
                "{what}"
            );
        }
    }
    s.running.shutdown().await;
}

/// A Pod nested `levels` deep (its own braces are level 1) through a chain under `spec.extra`.
fn deep_pod(levels: usize) -> Value {
    // The Pod is level 1 and its spec level 2; the chain adds the rest.
    let mut inner = json!(1);
    for _ in 0..levels - 2 {
        inner = json!({ "x": inner });
    }
    let mut p = pod("deep", None);
    p["spec"]["extra"] = inner;
    p
}

#[tokio::test]
async fn an_object_nested_128_levels_is_decided_and_129_is_refused_naming_the_limit() {
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], Limits::default()).await;
    let r = s
        .send("/validate", &review("CREATE", &deep_pod(128), &Value::Null))
        .await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("every Pod needs a team label")
    );
    let body = serde_json::to_vec(&review("CREATE", &deep_pod(129), &Value::Null)).unwrap();
    let (status, answer) = post_raw(&s, body).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"]["message"],
        "the object nests deeper than 128 levels"
    );
    s.running.shutdown().await;
}

#[tokio::test]
async fn a_policy_with_1000_rules_and_a_253_character_name_loads_and_decides() {
    let name = format!("p{}", "x".repeat(252));
    let rules: String = (0..1000)
        .map(|i| {
            format!(
                "    - name: rule-{i}\n      match: {{any: [{{resources: {{kinds: [Pod]}}}}]}}\n      validate:\n        message: \"label l{i} is required\"\n        pattern: {{metadata: {{labels: {{l{i}: \"?*\"}}}}}}\n"
            )
        })
        .collect();
    let policy = format!(
        "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: {name}\nspec:\n  validationFailureAction: Enforce\n  rules:\n{rules}"
    );
    let s = serve(&[("many.yaml", &policy)], patient()).await;
    let status: Value = s
        .client
        .get(format!("{}/health/readiness", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["policies"], 1, "{status}");
    let mut p = pod("a", Some("x"));
    p["metadata"]["labels"] = (0..999).map(|i| (format!("l{i}"), json!("v"))).collect();
    let r = s
        .send("/validate?timeout=30s", &review("CREATE", &p, &Value::Null))
        .await;
    assert_eq!(r["allowed"], false);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.contains("label l999 is required"), "{message}");
    assert!(message.contains(&name), "{message}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn a_create_without_an_object_is_denied_by_an_enforce_policy() {
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], Limits::default()).await;
    let mut r = review("CREATE", &pod("a", None), &Value::Null);
    r["request"]["object"] = Value::Null;
    let (status, answer) = post_raw(&s, serde_json::to_vec(&r).unwrap()).await;
    // The API server never sends it; the policy's pattern fails on the missing object, so an
    // Enforce policy denies (fail closed).
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("every Pod needs a team label")
    );
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_declared_large_but_not_sent_holds_no_budget() {
    // The whole body budget is 6 MiB; a client declares a 6 MiB body and sends none of it.
    let limits = Limits {
        body_budget_bytes: 6 * 1024 * 1024,
        ..Limits::default()
    };
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], limits).await;
    let mut slow = raw_tls(&s).await;
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        6 * 1024 * 1024
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s
        .send(
            "/validate",
            &review("CREATE", &pod("a", Some("x")), &Value::Null),
        )
        .await;
    assert_eq!(r["allowed"], true);
    drop(slow);
    s.running.shutdown().await;
}

/// Answers every API call after 100 ms, counting them: how far an evaluation went.
struct SlowApiCalls(Arc<std::sync::atomic::AtomicUsize>);

impl kybern_engine::context::ContextProvider for SlowApiCalls {
    fn resource(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Option<Value>, kybern_engine::context::ProviderError> {
        Ok(None)
    }
    fn list(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Vec<Value>, kybern_engine::context::ProviderError> {
        Ok(Vec::new())
    }
    fn config_map(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<Value>, kybern_engine::context::ProviderError> {
        Ok(None)
    }
    fn api_call(
        &self,
        _: &kybern_engine::context::ApiCall,
    ) -> Result<Value, kybern_engine::context::ProviderError> {
        std::thread::sleep(Duration::from_millis(100));
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(json!({"data": {"mode": "open"}}))
    }
    fn namespace_labels(
        &self,
        _: &str,
    ) -> Result<Option<kybern_engine::context::Labels>, kybern_engine::context::ProviderError> {
        Ok(None)
    }
    fn image_data(
        &self,
        image: &str,
    ) -> Result<kybern_engine::context::ImageData, kybern_engine::context::ProviderError> {
        kybern_engine::context::NoProvider.image_data(image)
    }
    fn global_context(
        &self,
        _: &str,
    ) -> Result<Option<Value>, kybern_engine::context::ProviderError> {
        Ok(None)
    }
}

impl kybern_webhook::provider::RequestContext for SlowApiCalls {
    fn roles_of(&self, _: &kybern_engine::request::UserInfo) -> (Vec<String>, Vec<String>) {
        (Vec::new(), Vec::new())
    }
    fn labels_of(&self, _: &str) -> Option<kybern_engine::context::Labels> {
        None
    }
}

/// Catalogue item 7: a client that goes away mid-evaluation stops the evaluation at the next
/// policy, so its worker is free again instead of finishing work nobody waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_evaluation_stops_the_evaluation() {
    // 40 policies, each making its own API call (100 ms): 4 s for a Pod evaluated to the end.
    let policies: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("p{i}.yaml"),
                format!(
                    "apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: slow-{i}
spec:
  validationFailureAction: Enforce
  rules:
  - name: mode
    match:
      any:
      - resources:
          kinds: [Pod]
    context:
    - name: cm
      apiCall:
        urlPath: /api/v1/namespaces/default/configmaps/mode-{i}
    validate:
      message: closed
      deny:
        conditions:
          any:
          - key: \"{{{{ cm.data.mode }}}}\"
            operator: Equals
            value: closed
"
                ),
            )
        })
        .collect();
    let dir = common::temp_dir("disconnect");
    let pdir = dir.join("policies");
    std::fs::create_dir_all(&pdir).unwrap();
    for (name, text) in &policies {
        std::fs::write(pdir.join(name), text).unwrap();
    }
    let lookups = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cfg = common::config(&pdir, &dir.join("certs"), patient());
    let running = kybern_webhook::server::start_with(
        cfg,
        kybern_webhook::server::ExternalParts {
            provider: Some(Arc::new(SlowApiCalls(Arc::clone(&lookups)))),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    running.wait_ready().await;
    let base = format!("https://localhost:{}", running.local_addr.port());
    let ca = running.ca_pem.clone().unwrap();
    let load = |n: usize| lookups.load(std::sync::atomic::Ordering::SeqCst) >= n;
    let count = || lookups.load(std::sync::atomic::Ordering::SeqCst);

    for http2 in [true, false] {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .timeout(Duration::from_millis(350));
        builder = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        let client = builder.build().unwrap();
        let before = count();
        let sent = client
            .post(format!("{base}/validate"))
            .json(&review("CREATE", &pod("slow", None), &Value::Null))
            .send()
            .await;
        assert!(
            sent.is_err(),
            "the client gives up before the 4 s evaluation"
        );
        drop(client);
        assert!(load(before + 1), "the evaluation had started");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let after_stop = count() - before;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let later = count() - before;
        // Evaluated to the end, it would have made 40 lookups; 20 by now.
        assert!(
            after_stop <= 6 && later == after_stop,
            "http2={http2}: {after_stop} lookups 1.5 s after the client left, {later} 0.5 s later"
        );
    }
    running.shutdown().await;
}

/// Catalogue item 31: 10,000 policies load, the server decides with them, and one of them
/// deleted and created again 20 times in a row leaves the set consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_policies_load_and_a_policy_deleted_and_created_in_a_loop_is_seen() {
    // One file of 10,000 policies on ConfigMaps (each requires its own label), as a generated
    // bundle gives them, and one Pod policy.
    let many: String = (0..10_000)
        .map(|i| {
            format!(
                "---\napiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata:\n  name: cm-{i}\nspec:\n  validationFailureAction: Enforce\n  rules:\n  - name: r\n    match: {{any: [{{resources: {{kinds: [ConfigMap], names: [\"cm-{i}\"]}}}}]}}\n    validate:\n      message: \"label l{i} is required\"\n      pattern: {{metadata: {{labels: {{l{i}: \"?*\"}}}}}}\n"
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let s = serve(
        &[("many.yaml", &many), ("team.yaml", REQUIRE_TEAM)],
        patient(),
    )
    .await;
    let loaded = started.elapsed();
    let readiness = |s: &common::TestServer| {
        let url = format!("{}/health/readiness", s.base);
        let client = s.client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(readiness(&s).await["policies"], 10_001);
    println!("10,001 policies loaded and served in {loaded:?}");
    let cm = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}});
    let r = s
        .send("/validate", &review("CREATE", &cm("cm-9999"), &Value::Null))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("label l9999 is required")
    );
    let r = s
        .send(
            "/validate",
            &review("CREATE", &pod("a", None), &Value::Null),
        )
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    // The Pod policy's file deleted and written again, 20 times: every answer meanwhile comes
    // from a whole set, and the last write is what counts.
    let file = s.dir.join("policies").join("team.yaml");
    for _ in 0..20 {
        std::fs::remove_file(&file).unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let tmp = s.dir.join("team.yaml.tmp");
        std::fs::write(&tmp, REQUIRE_TEAM).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = readiness(&s).await;
        if status["policies"] == 10_001 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the set did not settle: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = s
        .send(
            "/validate",
            &review("CREATE", &pod("b", None), &Value::Null),
        )
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    s.running.shutdown().await;
}

/// Catalogue item 2: a ClientHello sent a byte at a time does not hold its connection past the
/// handshake deadline, however steadily the bytes come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_sent_byte_by_byte_is_cut_at_the_handshake_deadline() {
    let limits = Limits {
        handshake_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], limits).await;
    let mut tcp = tokio::net::TcpStream::connect(s.running.local_addr)
        .await
        .unwrap();
    // A TLS record header announcing a 512-byte handshake message, then one byte per 200 ms.
    let started = std::time::Instant::now();
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend(std::iter::repeat_n(0x42u8, 500));
    let mut closed_after = None;
    for byte in hello {
        if tcp.write_all(&[byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await {
            // The server closed (or reset) the connection.
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still open after 5 s"
        );
    }
    let closed_after = closed_after.expect("the connection was closed");
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}"
    );
    let r = s
        .send(
            "/validate",
            &review("CREATE", &pod("a", None), &Value::Null),
        )
        .await;
    assert_eq!(r["allowed"], false);
    s.running.shutdown().await;
}

/// Catalogue item 5: a gzip-compressed body is not decompressed (the API server never sends
/// one): it is refused as a body that does not parse, never decided.
#[tokio::test]
async fn a_gzip_body_is_refused_as_unreadable() {
    let s = serve(&[("team.yaml", REQUIRE_TEAM)], Limits::default()).await;
    // A gzip member header (magic, deflate, no flags) and bytes that are not JSON.
    let mut body = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff];
    body.extend_from_slice(&[
        0x4b, 0x4c, 0x4a, 0x06, 0x00, 0xc2, 0x41, 0x24, 0x35, 0x03, 0, 0, 0,
    ]);
    let res = s
        .client
        .post(format!("{}/validate", s.base))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let answer: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 417, "{answer}");
    assert!(answer["error"]["message"].as_str().is_some(), "{answer}");
    s.running.shutdown().await;
}
