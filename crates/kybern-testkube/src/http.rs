//! Routing and wire format: Kubernetes REST paths and query parameters to store operations,
//! and their results to JSON responses (`metav1.Status` for every error).

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::discovery;
use crate::error::StoreError;
use crate::faults::Faults;
use crate::patch::{self, PatchKind};
use crate::resource::ResourceType;
use crate::selector::Selector;
use crate::store::{Part, Preconditions, Store, WriteOpts};
use crate::watch::{self, WatchRequest};

/// Bodies larger than this are refused (the real server's limit is about 3 MiB per object).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A response body: a whole JSON document or a watch stream.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// What every request handler needs.
#[derive(Clone)]
pub(crate) struct Shared {
    pub store: Store,
    pub faults: Faults,
    /// `127.0.0.1:PORT`, for `/api`'s `serverAddressByClientCIDRs`.
    pub address: String,
}

/// Answers one request.
pub(crate) async fn handle(ctx: Shared, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let agent = req
        .headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (delay, failure) = ctx
        .faults
        .on_request_from(method.as_str(), &path_and_query, &agent);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(err) = failure {
        return error(&err);
    }
    match route(&ctx, req).await {
        Ok(resp) => resp,
        Err(err) => error(&err),
    }
}

/// The parsed parts of a request that handlers look at.
struct Call {
    method: Method,
    query: HashMap<String, String>,
    content_type: String,
    manager: String,
    body: Bytes,
}

async fn route(ctx: &Shared, req: Request<Incoming>) -> Result<Response<Body>, StoreError> {
    let (parts, body) = req.into_parts();
    let query: HashMap<String, String> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or_default()
    };
    // The real server names an unnamed manager after the client's user agent.
    let manager = query.get("fieldManager").cloned().unwrap_or_else(|| {
        let agent = header(USER_AGENT).split('/').next().unwrap_or_default();
        if agent.is_empty() {
            "unknown".to_string()
        } else {
            agent.to_string()
        }
    });
    let content_type = header(CONTENT_TYPE).to_string();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| StoreError::Other {
            code: 413,
            message: "request entity too large".to_string(),
        })?
        .to_bytes();
    let segments: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let call = Call {
        method: parts.method,
        query,
        content_type,
        manager,
        body,
    };
    let get_only = |doc: Option<Value>| -> Result<Response<Body>, StoreError> {
        if call.method != Method::GET {
            return Err(StoreError::MethodNotAllowed);
        }
        doc.map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(not_found_path)
    };
    let st = || ctx.store.lock();
    match seg.as_slice() {
        ["version"] => get_only(Some(discovery::version())),
        ["healthz" | "readyz" | "livez"] => Ok(text_response("ok")),
        ["api"] => get_only(Some(discovery::core_versions(&ctx.address))),
        ["api", v] => get_only(discovery::resource_list(st().types(), "", v)),
        ["apis"] => get_only(Some(discovery::group_list(st().types()))),
        ["apis", g] => get_only(discovery::group(st().types(), g)),
        ["apis", g, v] => get_only(discovery::resource_list(st().types(), g, v)),
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ] if call.method == Method::POST => access_review(ctx, &call),
        ["api", v, rest @ ..] => resource(ctx, &call, "", v, rest).await,
        ["apis", g, v, rest @ ..] => resource(ctx, &call, g, v, rest).await,
        _ => Err(not_found_path()),
    }
}

/// A SelfSubjectAccessReview, answered from [`Faults::deny`] (resource attributes only).
fn access_review(ctx: &Shared, call: &Call) -> Result<Response<Body>, StoreError> {
    let mut review = decode_object(call)?;
    let attrs = review
        .pointer("/spec/resourceAttributes")
        .cloned()
        .ok_or_else(|| bad("spec.resourceAttributes is required".to_string()))?;
    let field = |name: &str| attrs.get(name).and_then(Value::as_str).unwrap_or_default();
    let allowed = ctx
        .faults
        .allowed(field("verb"), field("group"), field("resource"));
    review["status"] = serde_json::json!({"allowed": allowed});
    Ok(json_response(StatusCode::CREATED, &review))
}

/// A request under `/api/v1/...` or `/apis/{g}/{v}/...`.
async fn resource(
    ctx: &Shared,
    call: &Call,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Response<Body>, StoreError> {
    // `namespaces/{ns}/{plural}...`, but `namespaces/{name}/status` is the namespace itself.
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" && *plural != "finalize" => (
            Some(*ns),
            std::iter::once(*plural)
                .chain(tail.iter().copied())
                .collect::<Vec<_>>(),
        ),
        other => (None, other.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(not_found_path()),
    };
    let (rt, custom) = {
        let st = ctx.store.lock();
        let rt = st
            .resolve(group, version, plural)
            .ok_or_else(not_found_path)?;
        let custom = st.is_custom(&rt);
        (rt, custom)
    };
    if namespace.is_some() && !rt.namespaced
        || name.is_some() && namespace.is_none() && rt.namespaced
    {
        return Err(not_found_path());
    }
    let part = match sub {
        None => Part::Main,
        Some("status") if rt.has_status => Part::Status,
        Some(_) => return Err(not_found_path()),
    };
    let q = &call.query;
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let opts = WriteOpts {
        manager: call.manager.clone(),
        dry_run,
        force: q.get("force").is_some_and(|v| v == "true"),
    };
    let store = &ctx.store;
    let Some(name) = name else {
        return match call.method {
            Method::GET if flag(q, "watch") => watch_response(ctx, &rt, namespace, q),
            Method::GET => {
                let labels = Selector::labels(q.get("labelSelector").map_or("", String::as_str))?;
                let fields = Selector::fields(q.get("fieldSelector").map_or("", String::as_str))?;
                let limit = match q.get("limit") {
                    Some(l) => Some(
                        l.parse::<usize>()
                            .map_err(|_| bad(format!("invalid limit: {l:?}")))?,
                    ),
                    None => None,
                };
                let continue_token = q
                    .get("continue")
                    .map(String::as_str)
                    .filter(|c| !c.is_empty());
                let page =
                    store
                        .lock()
                        .page(&rt, namespace, &labels, &fields, limit, continue_token)?;
                let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
                if let Some(token) = page.continue_token {
                    meta["continue"] = json!(token);
                    meta["remainingItemCount"] = json!(page.remaining);
                }
                let list = json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(),
                    "metadata": meta,
                    "items": page.items,
                });
                Ok(json_response(StatusCode::OK, &list))
            }
            Method::POST => {
                let obj = decode_object(call)?;
                check_kind(&rt, &obj)?;
                let created = store.write(|st| st.create(&rt, namespace, obj, &opts))?;
                Ok(json_response(StatusCode::CREATED, &created))
            }
            Method::DELETE => {
                let labels = Selector::labels(q.get("labelSelector").map_or("", String::as_str))?;
                let fields = Selector::fields(q.get("fieldSelector").map_or("", String::as_str))?;
                let deleted = store.write(|st| {
                    let victims = st.matching(&rt, namespace, &labels, &fields);
                    victims
                        .iter()
                        .map(|o| {
                            let ns = o.pointer("/metadata/namespace").and_then(Value::as_str);
                            let n = o
                                .pointer("/metadata/name")
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            st.delete(&rt, ns, n, &Preconditions::default(), dry_run)
                        })
                        .collect::<Result<Vec<_>, _>>()
                })?;
                let list = json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(),
                    "metadata": {"resourceVersion": store.resource_version().to_string()},
                    "items": deleted,
                });
                Ok(json_response(StatusCode::OK, &list))
            }
            _ => Err(StoreError::MethodNotAllowed),
        };
    };
    let result = match call.method {
        Method::GET => store.lock().read(&rt, namespace, name)?,
        Method::PUT => {
            let obj = decode_object(call)?;
            check_kind(&rt, &obj)?;
            store.write(|st| st.update(&rt, namespace, name, obj, part, &opts))?
        }
        Method::PATCH => {
            let kind = PatchKind::from_content_type(&call.content_type).ok_or_else(|| {
                StoreError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format: {}",
                    call.content_type
                ))
            })?;
            if kind == PatchKind::Strategic && custom {
                return Err(StoreError::UnsupportedMediaType(
                    "strategic merge patch is not supported for custom resources".to_string(),
                ));
            }
            if kind == PatchKind::Apply && !q.contains_key("fieldManager") {
                return Err(bad(
                    "PATCH, application/apply-patch+yaml requires fieldManager to be set"
                        .to_string(),
                ));
            }
            let body = patch::decode(kind, &call.body)?;
            if kind == PatchKind::Apply {
                check_kind(&rt, &body)?;
            }
            store.write(|st| st.patch(&rt, namespace, name, kind, &body, part, &opts))?
        }
        Method::DELETE => {
            let options: Value = if call.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&call.body)
                    .map_err(|e| bad(format!("invalid DeleteOptions: {e}")))?
            };
            let text = |p: &str| {
                options
                    .pointer(p)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let pre = Preconditions {
                resource_version: text("/preconditions/resourceVersion"),
                uid: text("/preconditions/uid"),
            };
            let dry_run = dry_run
                || options
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|d| d.iter().any(|v| v == "All"));
            store.write(|st| st.delete(&rt, namespace, name, &pre, dry_run))?
        }
        _ => return Err(StoreError::MethodNotAllowed),
    };
    Ok(json_response(StatusCode::OK, &result))
}

fn watch_response(
    ctx: &Shared,
    rt: &ResourceType,
    namespace: Option<&str>,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, StoreError> {
    let timeout = match q.get("timeoutSeconds") {
        // Capped at a day (the real server caps watches far lower anyway).
        Some(t) => Some(Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| bad(format!("invalid timeoutSeconds: {t:?}")))?
                .min(86_400),
        )),
        None => None,
    };
    let req = WatchRequest {
        rt: rt.clone(),
        namespace: namespace.map(str::to_string),
        labels: Selector::labels(q.get("labelSelector").map_or("", String::as_str))?,
        fields: Selector::fields(q.get("fieldSelector").map_or("", String::as_str))?,
        resource_version: q.get("resourceVersion").cloned(),
        bookmarks: flag(q, "allowWatchBookmarks"),
        send_initial_events: flag(q, "sendInitialEvents"),
        timeout,
    };
    let rx = watch::start(&ctx.store, &ctx.faults, req)?;
    let mut resp = Response::new(BoxBody::new(Stream(rx)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// A watch body: each received line is one chunk; the body ends when the sender is dropped.
struct Stream(mpsc::Receiver<Bytes>);

impl http_body::Body for Stream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|b| Ok(Frame::data(b))))
    }
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v == "true" || v == "1")
}

fn bad(message: String) -> StoreError {
    StoreError::BadRequest(message)
}

fn not_found_path() -> StoreError {
    StoreError::Other {
        code: 404,
        message: "the server could not find the requested resource".to_string(),
    }
}

/// A POST or PUT body: JSON, or YAML when sent as such.
fn decode_object(call: &Call) -> Result<Value, StoreError> {
    if call.content_type.contains("protobuf") || call.content_type.contains("cbor") {
        // Clients that prefer a binary encoding retry with JSON on 415.
        return Err(StoreError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml; got {}",
            call.content_type
        )));
    }
    let value = if call.content_type.contains("yaml") {
        patch::decode(PatchKind::Apply, &call.body)?
    } else {
        serde_json::from_slice(&call.body).map_err(|e| bad(format!("error decoding body: {e}")))?
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(bad("body must be a JSON object".to_string()))
    }
}

/// A body's `kind`, if given, must be the resource's.
fn check_kind(rt: &ResourceType, obj: &Value) -> Result<(), StoreError> {
    match obj.get("kind").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() && kind != rt.kind => Err(bad(format!(
            "the kind of the body ({kind}) does not match the resource ({})",
            rt.kind
        ))),
        _ => Ok(()),
    }
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text_response(text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn error(err: &StoreError) -> Response<Body> {
    let code = StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &err.to_status())
}
