//! Python actors hosted in the runtime: a named Python actor is also a hosted actor
//! (`pulsing::hosted`), so by-name calls from peers and Rust reach it.
//!
//! [`PyHost::dispatch`] forwards each call to the actor's loop bridge as an `Incoming` event —
//! except a plain `def` method of a non-serial actor ([`Direct`]): that call is queued (as a
//! Rust value, no GIL) in the actor's `HostQueue` (see `handoff.rs`), in order with its local
//! `def` calls, and its drain is handed to a waiting worker, or (none waiting) to the loop as a
//! `Drain` event, so such calls never wake the event loop.
//!
//! An actor with `@pul.inline` methods keeps its calls in the order they came: an inline call
//! runs on the loop, so a `def` call queued straight for the workers could overtake one still
//! waiting for the loop. Its `def` calls go straight to the queue only while none of its calls
//! is on the way through the loop ([`LoopCalls`]: counted from here until the loop has started
//! them, which on Python 3.11+ it does as it takes them); otherwise they follow through the
//! loop. Streams are not counted: their generators start in a task of their own, in no order
//! with other calls, as before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pulsing::hosted::{self, Host, HostedCall, HostedMethod, HostedReply};
use pulsing::SpawnOptions;
use pyo3::prelude::*;

use crate::bridge::{Bridge, BridgeInner};
use crate::client::PyDynRef;
use crate::events::Event;
use crate::handoff;
use crate::runtime::{py_err, system};

/// Forwards calls for one Python actor to its loop's bridge.
struct PyHost {
    bridge: Arc<BridgeInner>,
    id: u64,
    direct: Option<Direct>,
}

/// The `def` methods of a Python actor that are queued for its workers straight from the
/// runtime's thread, never waking its event loop.
struct Direct {
    methods: std::collections::HashSet<String>,
    calls: Arc<handoff::HostCalls>,
    pool: Arc<handoff::Jobs>,
    /// For an actor with `@pul.inline` methods: its calls on the way through the loop.
    through_loop: Option<LoopCalls>,
}

/// How many calls of one actor went to its loop and have not started there yet (or, where the
/// loop cannot tell, are not answered yet): while any has not, its `def` calls follow them
/// through the loop instead of overtaking them.
#[derive(Default)]
struct LoopCalls(Arc<AtomicUsize>);

impl LoopCalls {
    fn idle(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    /// Counts one call sent to the loop, until the returned guard is dropped (when the call
    /// has started, is answered, or never will be).
    fn enter(&self) -> LoopCall {
        self.0.fetch_add(1, Ordering::AcqRel);
        LoopCall(self.0.clone())
    }
}

/// One counted call of [`LoopCalls`]; kept by its reply.
pub(crate) struct LoopCall(Arc<AtomicUsize>);

impl Drop for LoopCall {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Host for PyHost {
    fn dispatch(&self, call: HostedCall) {
        let mut counted = None;
        if let Some(direct) = &self.direct {
            let is_call = matches!(call.reply, HostedReply::Call(_));
            if is_call
                && direct.methods.contains(&call.method)
                && direct.through_loop.as_ref().is_none_or(LoopCalls::idle)
            {
                if direct.calls.push_remote(call) {
                    // Nobody drains this actor's queue: a waiting worker, else the event loop
                    // (which can start one).
                    if !direct.pool.offer_drain(self.id) {
                        self.bridge.push(Event::Drain(self.id));
                    }
                }
                return;
            }
            if is_call {
                counted = direct.through_loop.as_ref().map(LoopCalls::enter);
            }
        }
        self.bridge.push(Event::Incoming(self.id, call, counted));
    }

    fn stopped(&self) {
        self.bridge.push(Event::HostStopped(self.id));
    }
}

/// What Python passes for [`Direct`]: `(methods, queue, pool, in_order)`.
type DirectSpec<'py> = (
    Vec<String>,
    PyRef<'py, handoff::HostQueue>,
    PyRef<'py, handoff::JobQueue>,
    bool,
);

/// Registers Python actor `host` (of `bridge`'s loop) under `name`, with its class's
/// interface `(type_name, [(method, [params], stream, is_async, doc)])`. Calls of the methods
/// in `direct` (plain `def` methods of an actor that is not serial) go straight into `queue`,
/// drained by `pool`'s workers; with `in_order` (the actor has `@pul.inline` methods), only
/// while none of its calls is on the way through the loop.
#[pyfunction]
#[pyo3(signature = (bridge, host, name, type_name, methods, direct=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_hosted(
    py: Python<'_>,
    bridge: &Bridge,
    host: u64,
    name: String,
    type_name: String,
    methods: Vec<(String, Vec<String>, bool, bool, String)>,
    direct: Option<DirectSpec<'_>>,
) -> PyResult<PyDynRef> {
    let system = system()?;
    let iface = interface_for(&type_name, methods);
    let direct = direct.map(|(methods, queue, pool, in_order)| Direct {
        methods: methods.into_iter().collect(),
        calls: queue.shared(),
        pool: pool.shared(),
        through_loop: in_order.then(LoopCalls::default),
    });
    let host = Arc::new(PyHost {
        bridge: bridge.inner.clone(),
        id: host,
        direct,
    });
    let r = crate::runtime::block_on(
        py,
        hosted::spawn(&system, SpawnOptions::new().name(name), iface, host),
    )?
    .map_err(|e| py_err(py, &e))?;
    Ok(PyDynRef { inner: r })
}

/// One leaked interface per Python class (by type name and method list).
fn interface_for(
    type_name: &str,
    methods: Vec<(String, Vec<String>, bool, bool, String)>,
) -> &'static pulsing::Interface {
    type Key = (String, Vec<(String, Vec<String>, bool, bool, String)>);
    static CACHE: Mutex<Vec<(Key, &'static pulsing::Interface)>> = Mutex::new(Vec::new());
    let key = (type_name.to_owned(), methods);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, iface)) = cache.iter().find(|(k, _)| *k == key) {
        return iface;
    }
    let iface = hosted::interface(
        type_name,
        key.1
            .iter()
            .map(|(name, params, stream, is_async, doc)| HostedMethod {
                name: name.clone(),
                params: params
                    .iter()
                    .map(|p| (p.clone(), "Any".to_owned()))
                    .collect(),
                returns: "Any".to_owned(),
                stream: *stream,
                is_async: *is_async,
                doc: doc.clone(),
            })
            .collect(),
    );
    cache.push((key, iface));
    iface
}
