//! Kyverno's own CEL functions, as far as kybern provides them:
//!
//! | function | result |
//! |---|---|
//! | `x.orValue(d)` | also accepted on values that are not optional (returns them) |
//! | `parseServiceAccount(s)`, `user.parseServiceAccount(s)` | `{Namespace, Name}` of `system:serviceaccount:<ns>:<name>` |
//! | `json.unmarshal(s)`, `json.marshal(v)` | JSON text ↔ value |
//! | `yaml.parse(s)` | the value of one YAML document |
//! | `image(s)`, `parseImageReference(s)`, `isImage(s)` | an image reference with `.registry()`, `.repository()`, `.identifier()`, `.tag()`, `.digest()`, `.containsDigest()` |
//! | `resource.Get(apiVersion, resource, namespace, name)`, `resource.List(apiVersion, resource, namespace)` (also lower-case; a GVR may stand for the first two) | objects from the context provider |
//! | `resource.ToGVR(apiVersion, kind)`, `resource.toGVR` | `{Group, Version, Resource}` of a kind |
//! | `sha1(s)`, `sha256(s)`, `md5(s)` (also `hash.*`) | the hex digest of the string |
//! | `gzip.decompress(bytes)`, `gzip.compress(s)` | gzip data ↔ string |
//! | `image.GetMetadata(image)`, `getImageData(image)` | the image's registry data from the context provider |
//! | `verifyImageSignatures(image, attestors)`, `verifyAttestationSignatures(image, attestation, attestors)` | how many attestors verify, each checked by the context provider (`image_verify`) |
//! | `extractPayload(image, attestation)` | the statement an earlier `verifyAttestationSignatures` verified |
//! | `time.now()` | the current time (a timestamp) |
//! | `jwt.Decode(token, key)` | `{Valid, Header, Claims}` of a JWT (HMAC signatures checked, see `jwt`) |
//! | `regex.replace(s, re, rep[, n])`, `regex.extract(s, re)`, `regex.extractAll(s, re)` | cel-go's regex library (`\1` group references) |
//! | `http.Get(url)`, `http.Post(url, body)` | the response through the provider's API calls, with its `statusCode` (headers are not sent) |
//! | `globalContext.Get(name, projection)` | a global context entry, or one of its projections (provider) |
//! | `string(bool)` | `"true"`/`"false"`, as in cel-go |
//! | `type(v)`, `bool` ... `map`, `null_type` | type names as strings (the interpreter has no type values) |
//! | `envoy.Allowed()`, `envoy.Denied(code)`, `http.Allowed()`, `http.Denied(reason)`, `.WithBody(b)`, `.WithHeader(k, v)`, `.Response()` | authorization responses of the `Envoy`/`HTTP` evaluation modes (`{ok: ...}` / `{denied: ...}`) |
//! | `generator.Apply(namespace, objects)` | records objects a GeneratingPolicy generates (see [`GENERATED_VAR`]) |
//!
//! The resource functions cannot call the provider themselves (CEL functions are `'static`):
//! they read answers from a hidden variable, and when an answer is missing they record a
//! request that [`super::Expression::eval`] serves from the provider before evaluating again.

use super::value::{from_json, map, string, to_json};
use crate::images::ImageInfo;
use kube_cel::cel;
use kube_cel::cel::extractors::Arguments;
use kube_cel::cel::extractors::This;
use kube_cel::cel::objects::Opaque;
use kube_cel::cel::{ExecutionError, FunctionContext, ResolveResult};
use std::sync::Arc;

/// Hidden variable holding provider answers, keyed by [`fetch_key`].
pub const FETCHED_VAR: &str = "__kybern_fetched";
/// Hidden variable holding the [`FetchRequests`] of one evaluation attempt.
pub const REQUESTS_VAR: &str = "__kybern_requests";

/// Hidden variable holding the [`Generated`] collector of a GeneratingPolicy evaluation.
pub const GENERATED_VAR: &str = "__kybern_generated";

/// What `generator.Apply` asked for during one evaluation: `(namespace, objects)` pairs.
#[derive(Debug, Default)]
pub struct Generated(std::sync::Mutex<Vec<(String, cel::Value)>>);

impl PartialEq for Generated {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Generated {}

impl Opaque for Generated {
    fn runtime_type_name(&self) -> &str {
        "kybern.generated"
    }
}

impl Generated {
    /// The calls recorded so far, leaving none.
    pub fn take(&self) -> Vec<(String, cel::Value)> {
        self.0
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default()
    }

    fn push(&self, namespace: &str, objects: cel::Value) {
        if let Ok(mut g) = self.0.lock() {
            g.push((namespace.to_string(), objects));
        }
    }
}

/// Lookups an evaluation attempt needed and did not find among the answers. Errors inside
/// function arguments can be replaced by the interpreter, so requests travel on this side
/// channel rather than in the error.
#[derive(Debug, Default)]
pub struct FetchRequests(std::sync::Mutex<Vec<String>>);

impl PartialEq for FetchRequests {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for FetchRequests {}

impl Opaque for FetchRequests {
    fn runtime_type_name(&self) -> &str {
        "kybern.fetchRequests"
    }
}

impl FetchRequests {
    /// The keys requested so far.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default()
    }

    fn push(&self, key: &str) {
        if let Ok(mut g) = self.0.lock() {
            g.push(key.to_string());
        }
    }
}

/// Registers the functions of this module on `ctx`.
pub fn register(ctx: &mut cel::Context<'_>) {
    ctx.add_function("orValue", or_value);
    ctx.add_function("parseServiceAccount", parse_service_account);
    ctx.add_function("user.parseServiceAccount", parse_service_account);
    ctx.add_function("json.unmarshal", json_unmarshal);
    ctx.add_function("json.marshal", json_marshal);
    ctx.add_function("yaml.parse", yaml_parse);
    ctx.add_function("image", image);
    ctx.add_function("parseImageReference", image);
    ctx.add_function("isImage", is_image);
    ctx.add_function("registry", image_registry);
    ctx.add_function("repository", image_repository);
    ctx.add_function("identifier", image_identifier);
    ctx.add_function("tag", image_tag);
    ctx.add_function("digest", image_digest);
    ctx.add_function("containsDigest", image_contains_digest);
    ctx.add_function("resource.Get", resource_get);
    ctx.add_function("resource.List", resource_list);
    ctx.add_function("resource.get", resource_get);
    ctx.add_function("resource.list", resource_list);
    ctx.add_function("resource.ToGVR", resource_to_gvr);
    ctx.add_function("resource.toGVR", resource_to_gvr);
    for (name, f) in [
        ("sha1", hash_sha1 as fn(Arc<String>) -> ResolveResult),
        ("sha256", hash_sha256),
        ("md5", hash_md5),
        ("hash.sha1", hash_sha1),
        ("hash.sha256", hash_sha256),
        ("hash.md5", hash_md5),
    ] {
        ctx.add_function(name, f);
    }
    ctx.add_function("gzip.decompress", gzip_decompress);
    ctx.add_function("gzip.compress", gzip_compress);
    ctx.add_function("image.GetMetadata", image_metadata);
    ctx.add_function("globalContext.Get", global_context_get);
    ctx.add_function("jwt.Decode", super::jwt::decode);
    ctx.add_function("regex.replace", regex_replace);
    ctx.add_function("regex.extract", regex_extract);
    ctx.add_function("regex.extractAll", regex_extract_all);
    ctx.add_function("http.Get", http_get);
    ctx.add_function("http.Post", http_post);
    ctx.add_function("envoy.Allowed", authz_allowed);
    ctx.add_function("http.Allowed", authz_allowed);
    ctx.add_function("envoy.Denied", envoy_denied);
    ctx.add_function("http.Denied", http_denied);
    ctx.add_function("WithBody", authz_with_body);
    ctx.add_function("WithHeader", authz_with_header);
    ctx.add_function("Response", authz_response);
    ctx.add_function("dyn", dyn_value);
    ctx.add_function("time.now", time_now);
    ctx.add_function("type", type_of);
    ctx.add_function("string", string_of);
    // The interpreter has no type values: `type(x)` gives the type's name, and the type names
    // are variables holding the same names, so `type(x) == string` and
    // `type(x) != type(null)` compare as in cel-go.
    for name in TYPE_NAMES {
        ctx.add_variable_from_value(name, cel::Value::String(Arc::new(name.to_string())));
    }
    ctx.add_function("generator.Apply", generator_apply);
    ctx.add_function("generator.apply", generator_apply);
    ctx.add_function("verifyImageSignatures", verify_image_signatures);
    ctx.add_function("verifyAttestationSignatures", verify_attestation_signatures);
    ctx.add_function("extractPayload", extract_payload);
    ctx.add_function("getImageData", image_metadata);
}

/// Type names `type()` returns and that expressions can name.
const TYPE_NAMES: [&str; 9] = [
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
];

/// `string(v)`: the interpreter's conversion, plus `string(bool)` ("true"/"false"), which
/// cel-go has and the interpreter lacks.
fn string_of(ftx: &FunctionContext, This(this): This<cel::Value>) -> ResolveResult {
    match this {
        cel::Value::Bool(b) => Ok(cel::Value::String(Arc::new(b.to_string()))),
        other => cel::functions::string(ftx, This(other)),
    }
}

/// `type(v)`: the name of the value's type.
fn type_of(v: cel::Value) -> ResolveResult {
    let name = match &v {
        cel::Value::Null => "null_type",
        cel::Value::Bool(_) => "bool",
        cel::Value::Int(_) => "int",
        cel::Value::UInt(_) => "uint",
        cel::Value::Float(_) => "double",
        cel::Value::String(_) => "string",
        cel::Value::Bytes(_) => "bytes",
        cel::Value::List(_) => "list",
        cel::Value::Map(_) => "map",
        cel::Value::Duration(_) => "google.protobuf.Duration",
        cel::Value::Timestamp(_) => "google.protobuf.Timestamp",
        cel::Value::Function(..) => "function",
        cel::Value::Opaque(o) => o.runtime_type_name(),
    };
    Ok(cel::Value::String(Arc::new(name.to_string())))
}

/// `time.now()`: the current time, as Kyverno's time library gives it (the JMESPath `time_now`
/// functions read the same clock).
fn time_now() -> ResolveResult {
    Ok(cel::Value::Timestamp(chrono::Utc::now().fixed_offset()))
}

/// `envoy.Allowed()` / `http.Allowed()`: an authorization response that allows the request.
fn authz_allowed() -> ResolveResult {
    Ok(map([("ok".to_string(), map(Vec::new()))]))
}

/// `envoy.Denied(code)`: a response that denies the request with an HTTP status code.
fn envoy_denied(code: i64) -> ResolveResult {
    Ok(map([(
        "denied".to_string(),
        map([("code".to_string(), cel::Value::Int(code))]),
    )]))
}

/// `http.Denied(reason)`: a response that denies the request with a reason.
fn http_denied(reason: Arc<String>) -> ResolveResult {
    Ok(map([(
        "denied".to_string(),
        map([("reason".to_string(), string(reason.as_str()))]),
    )]))
}

/// Sets `field` of the (single) branch of an authorization response.
fn authz_set(this: &cel::Value, field: &str, value: cel::Value) -> ResolveResult {
    let mut json = to_json(this);
    if let Some(branch) = json
        .as_object_mut()
        .and_then(|m| m.values_mut().next())
        .and_then(serde_json::Value::as_object_mut)
    {
        branch.insert(field.to_string(), to_json(&value));
    }
    Ok(from_json(&json))
}

fn authz_with_body(This(this): This<cel::Value>, body: cel::Value) -> ResolveResult {
    authz_set(&this, "body", body)
}

fn authz_with_header(
    This(this): This<cel::Value>,
    key: Arc<String>,
    value: Arc<String>,
) -> ResolveResult {
    authz_set(
        &this,
        "headers",
        map([(key.to_string(), string(value.as_str()))]),
    )
}

/// `.Response()`: the finished response (the value itself).
fn authz_response(This(this): This<cel::Value>) -> ResolveResult {
    Ok(this)
}

/// `x.orValue(default)`: the optional's value or `default`; a value that is not optional is
/// returned as it is (policies written for Kyverno call it on plain fields).
fn or_value(This(this): This<cel::Value>, default: cel::Value) -> ResolveResult {
    match &this {
        cel::Value::Opaque(o) if o.runtime_type_name() == "optional_type" => Ok(o
            .downcast_ref::<cel::objects::OptionalValue>()
            .and_then(cel::objects::OptionalValue::value)
            .cloned()
            .unwrap_or(default)),
        _ => Ok(this),
    }
}

fn parse_service_account(s: Arc<String>) -> ResolveResult {
    let (ns, name) = s
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .unwrap_or(("", ""));
    Ok(map([
        ("Namespace".to_string(), string(ns)),
        ("Name".to_string(), string(name)),
    ]))
}

fn json_unmarshal(s: Arc<String>) -> ResolveResult {
    let v: serde_json::Value = serde_json::from_str(&s)
        .map_err(|e| ExecutionError::function_error("json.unmarshal", e.to_string()))?;
    Ok(from_json(&v))
}

fn json_marshal(v: cel::Value) -> ResolveResult {
    Ok(string(to_json(&v).to_string()))
}

fn yaml_parse(s: Arc<String>) -> ResolveResult {
    let docs = crate::yaml::parse_all(&s)
        .map_err(|e| ExecutionError::function_error("yaml.parse", e.to_string()))?;
    Ok(docs.first().map_or(cel::Value::Null, from_json))
}

/// A parsed image reference (the CEL `image` type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef(ImageInfo);

impl Opaque for ImageRef {
    fn runtime_type_name(&self) -> &str {
        "kyverno.image"
    }
}

fn image(s: Arc<String>) -> ResolveResult {
    ImageInfo::parse(&s)
        .map(|i| cel::Value::Opaque(Arc::new(ImageRef(i))))
        .ok_or_else(|| {
            ExecutionError::function_error("image", format!("invalid image reference {s:?}"))
        })
}

fn is_image(s: Arc<String>) -> bool {
    ImageInfo::parse(&s).is_some()
}

fn image_of<'a>(ftx: &FunctionContext, v: &'a cel::Value) -> Result<&'a ImageInfo, ExecutionError> {
    match v {
        cel::Value::Opaque(o) => o
            .downcast_ref::<ImageRef>()
            .map(|r| &r.0)
            .ok_or_else(|| ftx.error("not an image")),
        _ => Err(ftx.error("not an image")),
    }
}

fn image_registry(ftx: &FunctionContext, This(this): This<cel::Value>) -> ResolveResult {
    Ok(string(image_of(ftx, &this)?.registry.clone()))
}

fn image_repository(ftx: &FunctionContext, This(this): This<cel::Value>) -> ResolveResult {
    Ok(string(image_of(ftx, &this)?.path.clone()))
}

fn image_identifier(ftx: &FunctionContext, This(this): This<cel::Value>) -> ResolveResult {
    let i = image_of(ftx, &this)?;
    Ok(string(if i.digest.is_empty() {
        i.tag.clone()
    } else {
        i.digest.clone()
    }))
}

fn image_tag(ftx: &FunctionContext, This(this): This<cel::Value>) -> ResolveResult {
    Ok(string(image_of(ftx, &this)?.tag.clone()))
}

fn image_digest(ftx: &FunctionContext, This(this): This<cel::Value>) -> ResolveResult {
    Ok(string(image_of(ftx, &this)?.digest.clone()))
}

fn image_contains_digest(ftx: &FunctionContext, This(this): This<cel::Value>) -> ResolveResult {
    Ok(cel::Value::Bool(!image_of(ftx, &this)?.digest.is_empty()))
}

/// The cache key of one provider lookup.
pub fn fetch_key(
    op: &str,
    api_version: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> String {
    format!("{op}|{api_version}|{resource}|{namespace}|{name}")
}

/// The answers fetched so far in this evaluation (keys from [`fetch_key`] or [`VERIFY_KEY`]).
fn fetched_answers(ftx: &FunctionContext) -> Option<cel::objects::Map> {
    match cel::Value::try_from(ftx.ptx.get_variable(FETCHED_VAR)?.as_ref()).ok()? {
        cel::Value::Map(m) => Some(m),
        _ => None,
    }
}

/// Asks for `keys` to be fetched before the next attempt.
fn request_fetches<'k>(ftx: &FunctionContext, keys: impl IntoIterator<Item = &'k String>) {
    if let Some(v) = ftx.ptx.get_variable(REQUESTS_VAR)
        && let Ok(cel::Value::Opaque(o)) = cel::Value::try_from(v.as_ref())
        && let Some(r) = o.downcast_ref::<FetchRequests>()
    {
        for key in keys {
            r.push(key);
        }
    }
}

fn fetched(ftx: &FunctionContext, key: &str) -> ResolveResult {
    let found =
        fetched_answers(ftx).and_then(|m| m.map.get(&cel::objects::Key::from(key)).cloned());
    found.ok_or_else(|| {
        request_fetches(ftx, [&key.to_string()]);
        ExecutionError::function_error(ftx.name, format!("{key} is not available"))
    })
}

/// The `(apiVersion, resource)` that start the arguments of `resource.Get`/`resource.List`:
/// two strings, or one GVR from `resource.ToGVR`; the remaining arguments follow.
fn resource_args<'a>(
    ftx: &FunctionContext,
    args: &'a [cel::Value],
) -> Result<(String, String, &'a [cel::Value]), ExecutionError> {
    match args {
        [
            cel::Value::String(api_version),
            cel::Value::String(resource),
            rest @ ..,
        ] => Ok((api_version.to_string(), resource.to_string(), rest)),
        [cel::Value::Map(gvr), rest @ ..] => {
            let field = |k: &str| match gvr.map.get(&cel::objects::Key::from(k)) {
                Some(cel::Value::String(s)) => Ok(s.to_string()),
                _ => Err(ftx.error(format!("a GVR needs a string {k}"))),
            };
            let (group, version) = (field("Group")?, field("Version")?);
            let api_version = if group.is_empty() {
                version
            } else {
                format!("{group}/{version}")
            };
            Ok((api_version, field("Resource")?, rest))
        }
        _ => Err(ftx.error("expects an apiVersion and a resource, or a GVR from resource.ToGVR")),
    }
}

fn string_arg(ftx: &FunctionContext, v: Option<&cel::Value>) -> Result<String, ExecutionError> {
    match v {
        Some(cel::Value::String(s)) => Ok(s.to_string()),
        _ => Err(ftx.error("expects string arguments")),
    }
}

/// `resource.Get(apiVersion, resource, namespace, name)` or `resource.Get(gvr, namespace, name)`.
fn resource_get(ftx: &FunctionContext, Arguments(args): Arguments) -> ResolveResult {
    let (api_version, resource, rest) = resource_args(ftx, &args)?;
    let [namespace, name] = rest else {
        return Err(ftx.error("expects a namespace and a name after the resource"));
    };
    let (namespace, name) = (
        string_arg(ftx, Some(namespace))?,
        string_arg(ftx, Some(name))?,
    );
    fetched(
        ftx,
        &fetch_key("Get", &api_version, &resource, &namespace, &name),
    )
}

/// `resource.ToGVR(apiVersion, kind)`: the group, version and resource of a kind, as the API
/// server's discovery names it (`{Group, Version, Resource}`, the fields of Go's
/// `schema.GroupVersionResource`), for `resource.Get` and `resource.List`.
fn resource_to_gvr(api_version: Arc<String>, kind: Arc<String>) -> ResolveResult {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version.as_str()),
    };
    let resource = super::match_constraints::resource_for_kind(group, &kind);
    Ok(map([
        ("Group".to_string(), string(group)),
        ("Version".to_string(), string(version)),
        ("Resource".to_string(), string(&resource)),
    ]))
}

fn hex_string(bytes: &[u8]) -> ResolveResult {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    Ok(cel::Value::String(Arc::new(out)))
}

/// `sha1(s)`, `hash.sha1(s)`: the hex SHA-1 of the string's bytes (Kyverno's hash library).
fn hash_sha1(s: Arc<String>) -> ResolveResult {
    use sha1::Digest as _;
    hex_string(&sha1::Sha1::digest(s.as_bytes()))
}

/// `sha256(s)`, `hash.sha256(s)`: the hex SHA-256 of the string's bytes.
fn hash_sha256(s: Arc<String>) -> ResolveResult {
    use sha2::Digest as _;
    hex_string(&sha2::Sha256::digest(s.as_bytes()))
}

/// `md5(s)`, `hash.md5(s)`: the hex MD5 of the string's bytes.
fn hash_md5(s: Arc<String>) -> ResolveResult {
    use md5::Digest as _;
    hex_string(&md5::Md5::digest(s.as_bytes()))
}

/// Largest output `gzip.decompress` produces: a small input can inflate without bound.
const MAX_GUNZIP_BYTES: u64 = 16 << 20;

/// `gzip.decompress(bytes)`: the gzip data (one member or several, as Go's reader) as a string.
fn gzip_decompress(ftx: &FunctionContext, data: cel::Value) -> ResolveResult {
    use std::io::Read as _;
    let cel::Value::Bytes(data) = data else {
        return Err(ftx.error("expects bytes"));
    };
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data.as_slice())
        .take(MAX_GUNZIP_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| ftx.error(format!("gzip: {e}")))?;
    if out.len() as u64 > MAX_GUNZIP_BYTES {
        return Err(ftx.error(format!(
            "gzip: decompressed data exceeds {MAX_GUNZIP_BYTES} bytes"
        )));
    }
    String::from_utf8(out)
        .map(|s| cel::Value::String(Arc::new(s)))
        .map_err(|e| ftx.error(format!("gzip: decompressed data is not UTF-8: {e}")))
}

/// `gzip.compress(s)`: the string gzip-compressed, with a zero modification time so the output
/// is deterministic (the deflate bytes may differ from Go's; decompressing gives the string).
fn gzip_compress(ftx: &FunctionContext, s: Arc<String>) -> ResolveResult {
    use std::io::Write as _;
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(s.as_bytes())
        .map_err(|e| ftx.error(format!("gzip: {e}")))?;
    let out = enc.finish().map_err(|e| ftx.error(format!("gzip: {e}")))?;
    Ok(cel::Value::Bytes(Arc::new(out)))
}

/// Longest pattern the regex functions compile (their cost is linear in pattern and input).
const MAX_REGEX_LEN: usize = 4096;

/// Distinct patterns kept compiled; the set is bounded by the policies' expressions.
const REGEX_CACHE_LIMIT: usize = 1024;

// Patterns are almost always literals in the policy: compile each once, not per evaluation.
static REGEX_CACHE: std::sync::LazyLock<
    std::sync::RwLock<std::collections::HashMap<String, regex::Regex>>,
> = std::sync::LazyLock::new(Default::default);

fn compile_regex(ftx: &FunctionContext, pattern: &str) -> Result<regex::Regex, ExecutionError> {
    if let Ok(cache) = REGEX_CACHE.read()
        && let Some(re) = cache.get(pattern)
    {
        return Ok(re.clone());
    }
    if pattern.len() > MAX_REGEX_LEN {
        return Err(ftx.error(format!("regex pattern longer than {MAX_REGEX_LEN} bytes")));
    }
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ftx.error(format!("invalid regex {pattern:?}: {e}")))?;
    if let Ok(mut cache) = REGEX_CACHE.write() {
        if cache.len() >= REGEX_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(pattern.to_string(), re.clone());
    }
    Ok(re)
}

/// `regex.replace(target, pattern, replacement[, count])` (cel-go's regex library): `\N` in the
/// replacement names capture group N; a negative or absent count replaces every match.
fn regex_replace(ftx: &FunctionContext, Arguments(args): Arguments) -> ResolveResult {
    let text = |i: usize| match args.get(i) {
        Some(cel::Value::String(s)) => Ok(s.clone()),
        _ => Err(ftx.error("regex.replace needs string target, pattern and replacement")),
    };
    let (target, pattern, replacement) = (text(0)?, text(1)?, text(2)?);
    let limit = match args.get(3) {
        None => 0,
        Some(cel::Value::Int(n)) if *n < 0 => 0,
        Some(cel::Value::Int(0)) => return Ok(cel::Value::String(target)),
        Some(cel::Value::Int(n)) => usize::try_from(*n).unwrap_or(usize::MAX),
        Some(_) => return Err(ftx.error("regex.replace count must be an int")),
    };
    let re = compile_regex(ftx, &pattern)?;
    // `\N` becomes the crate's `${N}`; a literal `$` must not start a group reference.
    let mut rep = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => rep.push_str("$$"),
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                rep.push_str("${");
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    rep.push(d);
                    chars.next();
                }
                rep.push('}');
            }
            '\\' if chars.peek() == Some(&'\\') => {
                rep.push('\\');
                chars.next();
            }
            c => rep.push(c),
        }
    }
    Ok(cel::Value::String(Arc::new(
        re.replacen(&target, limit, rep.as_str()).into_owned(),
    )))
}

/// `regex.extract(target, pattern)`: the first match (its first group when it has groups), as
/// an optional.
fn regex_extract(
    ftx: &FunctionContext,
    target: Arc<String>,
    pattern: Arc<String>,
) -> ResolveResult {
    let re = compile_regex(ftx, &pattern)?;
    let found = re
        .captures(&target)
        .and_then(|c| c.get(1).or_else(|| c.get(0)));
    let value = found.map(|m| cel::Value::String(Arc::new(m.as_str().to_string())));
    Ok(cel::Value::Opaque(Arc::new(match value {
        Some(v) => cel::objects::OptionalValue::of(v),
        None => cel::objects::OptionalValue::none(),
    })))
}

/// `regex.extractAll(target, pattern)`: every match (its first group when it has groups).
fn regex_extract_all(
    ftx: &FunctionContext,
    target: Arc<String>,
    pattern: Arc<String>,
) -> ResolveResult {
    let re = compile_regex(ftx, &pattern)?;
    let all: Vec<cel::Value> = re
        .captures_iter(&target)
        .filter_map(|c| c.get(1).or_else(|| c.get(0)))
        .map(|m| cel::Value::String(Arc::new(m.as_str().to_string())))
        .collect();
    Ok(cel::Value::List(Arc::new(all)))
}

/// `http.Get(url[, headers])`: the response of a GET through the provider's API calls.
fn http_get(ftx: &FunctionContext, Arguments(args): Arguments) -> ResolveResult {
    let url = match args.first() {
        Some(cel::Value::String(u)) => u.clone(),
        _ => return Err(ftx.error("http.Get needs a URL string")),
    };
    fetched(ftx, &http_key("GET", &url, &serde_json::Value::Null))
}

/// `http.Post(url, body[, headers])`: the response of a POST through the provider's API calls.
fn http_post(ftx: &FunctionContext, Arguments(args): Arguments) -> ResolveResult {
    let (url, body) = match (args.first(), args.get(1)) {
        (Some(cel::Value::String(u)), Some(b)) => (u.clone(), super::value::to_json(b)),
        _ => return Err(ftx.error("http.Post needs a URL string and a body")),
    };
    fetched(ftx, &http_key("POST", &url, &body))
}

/// The fetch key of an HTTP call: the body (JSON) comes last, as it may hold the separator.
pub fn http_key(method: &str, url: &str, body: &serde_json::Value) -> String {
    format!("Http|{method}|{url}|{body}")
}

/// `globalContext.Get(name, projection)`: a global context entry (its projection when one is
/// named), through the provider.
fn global_context_get(
    ftx: &FunctionContext,
    name: Arc<String>,
    projection: Arc<String>,
) -> ResolveResult {
    fetched(ftx, &fetch_key("Global", "", "", &projection, &name))
}

fn image_metadata(ftx: &FunctionContext, image: Arc<String>) -> ResolveResult {
    fetched(ftx, &fetch_key("Image", "", "", "", &image))
}

/// `resource.List(apiVersion, resource, namespace)` or `resource.List(gvr, namespace)`.
fn resource_list(ftx: &FunctionContext, Arguments(args): Arguments) -> ResolveResult {
    let (api_version, resource, rest) = resource_args(ftx, &args)?;
    let [namespace] = rest else {
        return Err(ftx.error("expects a namespace after the resource"));
    };
    let namespace = string_arg(ftx, Some(namespace))?;
    fetched(
        ftx,
        &fetch_key("List", &api_version, &resource, &namespace, ""),
    )
}

/// `generator.Apply(namespace, objects)`: a marker the GeneratingPolicy evaluator collects (see
/// [`super::generating_policy::GENERATED_KEY`]).
fn generator_apply(
    ftx: &FunctionContext,
    namespace: Arc<String>,
    objects: cel::Value,
) -> ResolveResult {
    // Inside a GeneratingPolicy the call is recorded and yields true, as in Kyverno, so it can
    // sit inside `all()` or `&&`; elsewhere it yields a marker of what it would generate.
    if let Some(v) = ftx.ptx.get_variable(GENERATED_VAR)
        && let Ok(cel::Value::Opaque(o)) = cel::Value::try_from(v.as_ref())
        && let Some(g) = o.downcast_ref::<Generated>()
    {
        g.push(&namespace, objects);
        return Ok(cel::Value::Bool(true));
    }
    Ok(map([(
        super::generating_policy::GENERATED_KEY.to_string(),
        map([
            ("namespace".to_string(), string(namespace.as_str())),
            ("objects".to_string(), objects),
        ]),
    )]))
}

/// Prefix of the fetch keys of image verifications: `Verify|<JSON of the check>`.
pub const VERIFY_KEY: &str = "Verify|";

/// The fetch key of one attestor checked on `image` (and, for attestations, one attestation).
fn verify_key(image: &str, attestor: &cel::Value, attestation: Option<&cel::Value>) -> String {
    let mut check = serde_json::json!({"image": image, "attestor": to_json(attestor)});
    if let (Some(a), Some(m)) = (attestation, check.as_object_mut()) {
        m.insert("attestation".into(), to_json(a));
    }
    format!("{VERIFY_KEY}{check}")
}

/// How many of `attestors` verify `image` (Kyverno's `verifyImageSignatures` and
/// `verifyAttestationSignatures`): each attestor is one fetch, answered by the provider; every
/// missing answer is requested at once so one more attempt finishes the call.
fn count_verified(
    ftx: &FunctionContext,
    image: &str,
    attestors: &cel::Value,
    attestation: Option<&cel::Value>,
) -> ResolveResult {
    let cel::Value::List(list) = attestors else {
        return Err(ftx.error("expects a list of attestors"));
    };
    let answers = fetched_answers(ftx);
    let mut verified = 0i64;
    let mut missing = Vec::new();
    for attestor in list.iter() {
        let key = verify_key(image, attestor, attestation);
        match answers
            .as_ref()
            .and_then(|m| m.map.get(&cel::objects::Key::from(key.as_str())))
        {
            Some(answer) => {
                if verified_answer(answer) {
                    verified += 1;
                }
            }
            None => missing.push(key),
        }
    }
    if missing.is_empty() {
        return Ok(cel::Value::Int(verified));
    }
    request_fetches(ftx, &missing);
    Err(ExecutionError::function_error(
        ftx.name,
        format!(
            "{} verification(s) of {image} are not available",
            missing.len()
        ),
    ))
}

/// An answer to a verification fetch: `{verified: bool, ...}`.
fn verified_answer(answer: &cel::Value) -> bool {
    match answer {
        cel::Value::Map(m) => matches!(
            m.map.get(&cel::objects::Key::from("verified")),
            Some(cel::Value::Bool(true))
        ),
        _ => false,
    }
}

/// `verifyImageSignatures(image, [attestors...])`: how many attestors verify the image.
fn verify_image_signatures(
    ftx: &FunctionContext,
    image: Arc<String>,
    attestors: cel::Value,
) -> ResolveResult {
    count_verified(ftx, &image, &attestors, None)
}

/// `verifyAttestationSignatures(image, attestation, [attestors...])`: how many attestors sign an
/// attestation of that type for the image.
fn verify_attestation_signatures(
    ftx: &FunctionContext,
    image: Arc<String>,
    attestation: cel::Value,
    attestors: cel::Value,
) -> ResolveResult {
    count_verified(ftx, &image, &attestors, Some(&attestation))
}

/// `extractPayload(image, attestation)`: the in-toto statement of a verified attestation, from
/// an earlier `verifyAttestationSignatures` of the same evaluation (as in Kyverno, which
/// refuses before it).
fn extract_payload(
    ftx: &FunctionContext,
    image: Arc<String>,
    attestation: cel::Value,
) -> ResolveResult {
    let attestation = to_json(&attestation);
    let answers = fetched_answers(ftx);
    for (key, answer) in answers.iter().flat_map(|m| m.map.iter()) {
        let cel::objects::Key::String(k) = key else {
            continue;
        };
        let Some(check) = k
            .strip_prefix(VERIFY_KEY)
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        else {
            continue;
        };
        if check.get("image").and_then(serde_json::Value::as_str) == Some(image.as_str())
            && check.get("attestation") == Some(&attestation)
            && verified_answer(answer)
            && let cel::Value::Map(m) = answer
            && let Some(payload) = m.map.get(&cel::objects::Key::from("payload"))
        {
            return Ok(payload.clone());
        }
    }
    Err(ExecutionError::function_error(
        ftx.name,
        "intoto attestation payload cannot be fetch before verifying intoto attestation",
    ))
}

/// `dyn(x)`: `x` itself (a type-checker hint in cel-go).
fn dyn_value(v: cel::Value) -> ResolveResult {
    Ok(v)
}
