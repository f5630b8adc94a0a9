//! Injected faults (failing requests, latency, dropped and expired watches) and the request log.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::StoreError;
use crate::store::Store;

/// How many requests the log keeps (the oldest are dropped first).
const LOG_LIMIT: usize = 10_000;

/// A handle for breaking the fake on purpose and for seeing what clients asked. Cheap to clone.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<Inner>,
    store: Store,
}

struct Inner {
    state: Mutex<FaultState>,
    /// Bumped to close every open watch.
    drop_watches: watch::Sender<u64>,
    /// Bumped to send every open watch a 410 and close it.
    expire_watches: watch::Sender<u64>,
    /// Plural resource names whose watch events are held back (delivered once released).
    held: watch::Sender<Vec<String>>,
}

#[derive(Default)]
struct FaultState {
    rules: Vec<Rule>,
    /// `(verb, group, resource)` that SelfSubjectAccessReviews deny (`*` matches any).
    denied: Vec<(String, String, String)>,
    latency: Duration,
    log: Vec<(String, String)>,
    /// The User-Agent of each logged request, in the same order.
    agents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Methods {
    Any,
    One(String),
    /// Every method but GET (what `conflict_next` targets).
    Writes,
}

#[derive(Debug, Clone)]
struct Rule {
    methods: Methods,
    path_contains: String,
    code: u16,
    remaining: usize,
}

/// The signals an open watch listens to.
pub(crate) struct WatchSignals {
    pub drop: watch::Receiver<u64>,
    pub expire: watch::Receiver<u64>,
    pub held: watch::Receiver<Vec<String>>,
}

impl Faults {
    pub(crate) fn new(store: Store) -> Faults {
        let (drop_watches, _) = watch::channel(0);
        let (expire_watches, _) = watch::channel(0);
        let (held, _) = watch::channel(Vec::new());
        Faults {
            inner: Arc::new(Inner {
                state: Mutex::new(FaultState::default()),
                drop_watches,
                expire_watches,
                held,
            }),
            store,
        }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes every open watch stream now (cleanly, as a server-side timeout would).
    pub fn drop_watches(&self) {
        self.inner.drop_watches.send_modify(|n| *n += 1);
    }

    /// Sends every open watch a `410 Expired` ERROR event and closes it, and forgets the event
    /// history, so that a watch resuming from any earlier resource version also gets 410.
    pub fn expire_watches(&self) {
        self.store.compact();
        self.inner.expire_watches.send_modify(|n| *n += 1);
    }

    /// Holds back the watch events of `plural` (e.g. `namespaces`): open and new watches of it
    /// send nothing more until [`Faults::release_watch_events`], as a lagging watch would, while
    /// reads still see the current state.
    pub fn hold_watch_events(&self, plural: &str) {
        self.inner.held.send_modify(|h| h.push(plural.to_string()));
    }

    /// Delivers the events held back by [`Faults::hold_watch_events`], and new ones again.
    pub fn release_watch_events(&self, plural: &str) {
        self.inner.held.send_modify(|h| h.retain(|p| p != plural));
    }

    /// Makes the next `times` requests whose method is `method` (any with `None`, compared
    /// case-insensitively) and whose path and query contain `path_contains` fail with `code`.
    pub fn fail(&self, method: Option<&str>, path_contains: &str, code: u16, times: usize) {
        let methods = method.map_or(Methods::Any, |m| Methods::One(m.to_ascii_uppercase()));
        self.add(methods, path_contains, code, times);
    }

    /// Makes the next `times` writes (any method but GET) whose path contains `path_contains`
    /// fail with `409 Conflict`.
    pub fn conflict_next(&self, path_contains: &str, times: usize) {
        self.add(Methods::Writes, path_contains, 409, times);
    }

    /// Makes SelfSubjectAccessReviews deny `verb` on `resource` of `group` (each `*` for any);
    /// everything else is allowed, as for a client bound to `cluster-admin`.
    pub fn deny(&self, verb: &str, group: &str, resource: &str) {
        self.lock()
            .denied
            .push((verb.to_string(), group.to_string(), resource.to_string()));
    }

    /// Takes back every [`Faults::deny`].
    pub fn allow_all(&self) {
        self.lock().denied.clear();
    }

    /// Whether the client may do `verb` on `resource` of `group`.
    pub(crate) fn allowed(&self, verb: &str, group: &str, resource: &str) -> bool {
        let is = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        !self
            .lock()
            .denied
            .iter()
            .any(|(v, g, r)| is(v, verb) && is(g, group) && is(r, resource))
    }

    /// Delays every request by `delay` before it is handled (`Duration::ZERO` to stop).
    pub fn latency(&self, delay: Duration) {
        self.lock().latency = delay;
    }

    /// Every request so far as `(method, path and query)`, oldest first.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.lock().log.clone()
    }

    /// Every request so far as `(method, path and query, User-Agent)`, oldest first: tells
    /// the requests of one client (kube-rs says `kube-rs/...`, kubectl `kubectl/...`) from others.
    pub fn requests_with_agents(&self) -> Vec<(String, String, String)> {
        let st = self.lock();
        st.log
            .iter()
            .zip(&st.agents)
            .map(|((m, p), a)| (m.clone(), p.clone(), a.clone()))
            .collect()
    }

    /// Forgets pending failures, latency and the request log.
    pub fn reset(&self) {
        *self.lock() = FaultState::default();
    }

    fn add(&self, methods: Methods, path_contains: &str, code: u16, times: usize) {
        if times > 0 {
            self.lock().rules.push(Rule {
                methods,
                path_contains: path_contains.to_string(),
                code,
                remaining: times,
            });
        }
    }

    /// Logs a request and returns the delay to apply and the failure to answer with, if any.
    #[cfg(test)]
    pub(crate) fn on_request(
        &self,
        method: &str,
        path_and_query: &str,
    ) -> (Duration, Option<StoreError>) {
        self.on_request_from(method, path_and_query, "")
    }

    /// [`Faults::on_request`] with the client's User-Agent.
    pub(crate) fn on_request_from(
        &self,
        method: &str,
        path_and_query: &str,
        agent: &str,
    ) -> (Duration, Option<StoreError>) {
        let mut st = self.lock();
        if st.log.len() >= LOG_LIMIT {
            st.log.remove(0);
            st.agents.remove(0);
        }
        st.agents.push(agent.to_string());
        st.log
            .push((method.to_string(), path_and_query.to_string()));
        let hit = st.rules.iter_mut().find(|r| {
            let method_ok = match &r.methods {
                Methods::Any => true,
                Methods::One(m) => m == method,
                Methods::Writes => method != "GET",
            };
            method_ok && path_and_query.contains(&r.path_contains)
        });
        let failure = hit.map(|rule| {
            rule.remaining -= 1;
            let message = if rule.code == 409 {
                "operation cannot be fulfilled: injected conflict".to_string()
            } else {
                format!("injected failure ({})", rule.code)
            };
            StoreError::Other {
                code: rule.code,
                message,
            }
        });
        st.rules.retain(|r| r.remaining > 0);
        (st.latency, failure)
    }

    pub(crate) fn watch_signals(&self) -> WatchSignals {
        WatchSignals {
            drop: self.inner.drop_watches.subscribe(),
            expire: self.inner.expire_watches.subscribe(),
            held: self.inner.held.subscribe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_down_and_match_method_and_path() {
        let f = Faults::new(Store::new());
        f.fail(Some("get"), "/configmaps", 503, 2);
        f.conflict_next("/leases/", 1);
        assert!(
            f.on_request("POST", "/api/v1/namespaces/default/configmaps")
                .1
                .is_none()
        );
        assert_eq!(
            f.on_request("GET", "/api/v1/configmaps?limit=1")
                .1
                .unwrap()
                .code(),
            503
        );
        assert_eq!(
            f.on_request("GET", "/api/v1/configmaps")
                .1
                .unwrap()
                .reason(),
            "ServiceUnavailable"
        );
        assert!(f.on_request("GET", "/api/v1/configmaps").1.is_none());
        assert!(
            f.on_request("GET", "/apis/coordination.k8s.io/v1/namespaces/d/leases/l")
                .1
                .is_none()
        );
        let c = f
            .on_request(
                "PATCH",
                "/apis/coordination.k8s.io/v1/namespaces/d/leases/l",
            )
            .1
            .unwrap();
        assert_eq!((c.code(), c.reason()), (409, "Conflict"));
        assert_eq!(f.requests().len(), 6);
        f.reset();
        assert!(f.requests().is_empty());
    }
}
