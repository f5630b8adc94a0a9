//! kybern-testkube: a fake Kubernetes API server for tests, in process, over plain HTTP.
//!
//! No real API server runs where kybern's tests run, so cluster code (kube-rs clients,
//! watchers and reflectors, `kube-lease-manager`) and `kubectl` are tested against this one.
//! It owns an in-memory object store and speaks the API server's HTTP dialect on
//! `127.0.0.1`: discovery, the REST paths of every registered type, lists with selectors and
//! paging, optimistic concurrency, the four PATCH formats, finalizers, watches with bookmarks,
//! and `metav1.Status` errors. It must stay a test tool: no TLS, no authentication or
//! authorisation, no admission, no persistence, and nothing in kybern's production code may
//! depend on it.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kybern_testkube::FakeApiServer;
//! let server = FakeApiServer::start().await?;             // 127.0.0.1, a free port
//! server.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"))?;
//! // kube: Config::from_custom_kubeconfig(Kubeconfig::from_yaml(&server.kubeconfig())?, ..)
//! // kubectl: kubectl --kubeconfig /tmp/kubeconfig apply --validate=false -f x.yaml
//! server.store().create("v1", "configmaps", serde_json::json!({
//!     "metadata": {"name": "c", "namespace": "default"}, "data": {"k": "v"}})).unwrap();
//! server.faults().drop_watches();                         // every open watch ends now
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! - [`FakeApiServer`]: `start`, `start_on`, `addr`, `url`, `kubeconfig` (context, cluster and user
//!   `fake`, namespace `default`, a dummy token), `write_kubeconfig`, `store`, `faults`,
//!   `shutdown`. The binary `kybern-fake-apiserver` runs one until Ctrl-C.
//! - [`Store`]: the objects, without a client: `register` a [`ResourceType`], `get`, `list`,
//!   `create`, `put`, `put_status`, `merge_patch`, `delete` (each as the HTTP request would,
//!   watch events included), `resource_version`, and `wait_for` to poll a condition.
//! - [`Faults`]: `fail` the next N matching requests with a code, `conflict_next`, `latency`,
//!   `drop_watches`, `expire_watches` (410 for open watches and for resuming from before now),
//!   the request log `requests`, and `reset`.
//!
//! Built in: core `v1` namespaces (`default`, `kube-system`, `kube-public` and
//! `kube-node-lease` exist), configmaps, secrets, pods, services, serviceaccounts, events;
//! `apps/v1` deployments, replicasets; `batch/v1` jobs, cronjobs; leases; the
//! `admissionregistration.k8s.io` webhook configurations and (mutating) admission policies and
//! bindings; RBAC; CustomResourceDefinitions; `events.k8s.io/v1` events; network policies.
//! Writing a CustomResourceDefinition registers its served versions (scope, names, short
//! names, status subresource) and marks it `Established`; deleting it removes the types and
//! their objects.
//!
//! # Semantics, and where they are approximations
//!
//! - One global resource version; `uid`, `creationTimestamp`, `generation` (bumped when
//!   anything but `metadata` and a status subresource's `status` changes) are the server's.
//!   A write that changes nothing keeps the version and sends no event, as on a real server.
//! - Types with a status subresource: the main resource ignores `status`, `/status` changes
//!   only `status`. Creating in a namespace that does not exist is 404, as on a real cluster.
//! - PUT and every PATCH kind: a `metadata.resourceVersion` in the body (or patched result)
//!   that is not the stored one is 409 Conflict.
//! - Strategic merge patches and server-side apply use kybern-engine's strategic merge, with
//!   the merge keys of built-in types (`containers` by `name`, ...); lists of custom resources
//!   are replaced. A strategic merge patch of a custom resource is 415, as on a real server.
//!   Apply requires `fieldManager`, creates missing objects and records which manager owns
//!   which field: applying a field another manager owns with a different value is 409 unless
//!   `force=true` (lists count as one field). `managedFields` are not shown, and fields a
//!   manager stops applying are not removed.
//! - Field selectors accept any dotted path (the real server allows a few per type).
//! - Lists always serve the latest state (no `resourceVersionMatch=Exact` snapshots); `limit`
//!   and `continue` page through it.
//! - Watches resume from any version of the last 1000 events; older ones get one `ERROR`
//!   event with a 410 `Expired` Status. Objects that start or stop matching a selector appear
//!   as ADDED or DELETED. `allowWatchBookmarks` sends a BOOKMARK at once and every second;
//!   `sendInitialEvents=true` ends the initial ADDED events with the `initial-events-end`
//!   bookmark.
//! - Deleting a namespace deletes its objects at once, finalizers or not. No controllers
//!   run: no garbage collection of owned objects, no Pods for Deployments, and core `v1` and
//!   `events.k8s.io/v1` Events are stored apart. `dryRun=All` is honoured. An update without
//!   `fieldManager` is owned by the user agent's first word, as on a real server.
//! - Discovery is the legacy form even when aggregated discovery or a Table is asked for;
//!   kubectl copes. `/openapi/v2` and `/openapi/v3` are 404, so run kubectl's `apply` and
//!   `create -f` with `--validate=false`. Bodies are JSON or YAML only: kubectl's generator
//!   commands (`kubectl create configmap|secret|namespace NAME`) send protobuf and get 415, so
//!   create from files instead.

mod crd;
mod discovery;
mod error;
mod faults;
mod http;
mod ownership;
mod patch;
mod resource;
mod selector;
mod server;
mod store;
mod watch;

pub use error::StoreError;
pub use faults::Faults;
pub use resource::{ResourceType, split_api_version};
pub use server::FakeApiServer;
pub use store::Store;
