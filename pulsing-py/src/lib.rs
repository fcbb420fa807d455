//! `pulsing._native`: the Rust half of the Python package.
//!
//! All asyncio bridging goes through one object per event loop, the [`Bridge`]: Rust tasks
//! (running on Pulsing's tokio runtime) never touch Python objects. They push plain Rust events
//! (a finished call's `Value`, a batch of stream items, an incoming call for a Python actor) into
//! the bridge's queue and write one byte to a socket pair the loop watches (`add_reader`) — only
//! when the queue was empty, so one wake-up drains many completions. The loop thread then takes
//! the whole queue under the GIL and turns it into Python objects. Because no Rust thread ever
//! holds or touches a Python object, the interpreter can finalize while tokio threads still run.

#![allow(unreachable_pub)]

mod convert;
mod handoff;
mod malloc;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use pulsing::hosted::{self, Host, HostedCall, HostedMethod, HostedReply, SinkSend, StreamSink};
use pulsing::{ActorSystem, DynRef, Error, Reply, SpawnOptions, Value, ValueStream};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::convert::{error_tuple, to_args, to_py, to_value};

// ---------------------------------------------------------------------------------------------
// The runtime and the system

struct Global {
    runtime: Option<tokio::runtime::Runtime>,
    system: Option<ActorSystem>,
}

static GLOBAL: Mutex<Global> = Mutex::new(Global {
    runtime: None,
    system: None,
});

fn global() -> std::sync::MutexGuard<'static, Global> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime's handle (started on first use); `None` after the final shutdown.
fn handle() -> PyResult<tokio::runtime::Handle> {
    let mut g = global();
    if FINALIZED.load(Ordering::Acquire) {
        return Err(PyRuntimeError::new_err(
            "the Pulsing runtime has been shut down",
        ));
    }
    if g.runtime.is_none() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pulsing")
            .enable_all()
            .build()
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        g.runtime = Some(rt);
    }
    Ok(g.runtime.as_ref().expect("just set").handle().clone())
}

/// Seconds from Python as a `Duration` (a negative or NaN one is a `ValueError`).
fn seconds(t: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(t).map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!("not a valid number of seconds: {t}"))
    })
}

/// Set once the runtime is gone for good (interpreter exit): nothing starts it again.
static FINALIZED: AtomicBool = AtomicBool::new(false);

fn system() -> PyResult<ActorSystem> {
    global()
        .system
        .clone()
        .ok_or_else(|| PyRuntimeError::new_err("pulsing is not initialized: call pul.init() first"))
}

fn py_err(py: Python<'_>, e: &Error) -> PyErr {
    match error_tuple(py, e) {
        Ok(t) => PulsingNativeError::new_err(t),
        Err(err) => err,
    }
}

pyo3::create_exception!(_native, PulsingNativeError, pyo3::exceptions::PyException);

/// Sends the runtime's warnings (and, with `PULSING_LOG=info|debug|trace`, more) to stderr;
/// `PULSING_LOG=off` silences it. Written by Rust directly, never through Python.
fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let level = match std::env::var("PULSING_LOG").as_deref() {
            Ok("off") => return,
            Ok("error") => tracing::Level::ERROR,
            Ok("info") => tracing::Level::INFO,
            Ok("debug") => tracing::Level::DEBUG,
            Ok("trace") => tracing::Level::TRACE,
            _ => tracing::Level::WARN,
        };
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .try_init();
    });
}

/// Starts the actor system (blocking, without the GIL). Fails if one is running.
#[pyfunction]
#[pyo3(signature = (addr=None, seeds=Vec::new(), secret=None, call_timeout=Some(30.0), advertise=None))]
fn init(
    py: Python<'_>,
    addr: Option<String>,
    seeds: Vec<String>,
    secret: Option<Vec<u8>>,
    call_timeout: Option<f64>,
    advertise: Option<String>,
) -> PyResult<()> {
    init_logging();
    malloc::tune();
    let handle = handle()?;
    if global().system.is_some() {
        return Err(PyRuntimeError::new_err("pulsing is already initialized"));
    }
    let mut builder = ActorSystem::builder();
    if let Some(addr) = addr {
        builder = builder.addr(addr);
    }
    if !seeds.is_empty() {
        builder = builder.seeds(seeds);
    }
    if let Some(secret) = secret {
        builder = builder.secret(secret);
    }
    builder = match call_timeout {
        Some(t) => builder.call_timeout(seconds(t)?),
        None => builder.no_call_timeout(),
    };
    if let Some(adv) = advertise {
        builder = builder.advertise(adv);
    }
    builder = builder.shutdown_grace(Duration::from_secs(2));
    let system = py
        .detach(|| handle.block_on(builder.build()))
        .map_err(|e| py_err(py, &e))?;
    global().system = Some(system);
    Ok(())
}

/// True if `init` tuned glibc's allocator for large messages (see `malloc.rs`).
#[pyfunction]
fn malloc_tuned() -> bool {
    malloc::tuned()
}

/// Stops every actor of the system and leaves the cluster (blocking, without the GIL).
#[pyfunction]
fn shutdown(py: Python<'_>) {
    let (system, handle) = {
        let g = global();
        (
            g.system.clone(),
            g.runtime.as_ref().map(|r| r.handle().clone()),
        )
    };
    if let (Some(system), Some(handle)) = (system, handle) {
        py.detach(|| handle.block_on(system.shutdown()));
    }
    global().system = None;
}

/// The last step at interpreter exit: shuts the system down, then the runtime and its threads.
#[pyfunction]
fn finalize(py: Python<'_>) {
    shutdown(py);
    FINALIZED.store(true, Ordering::Release);
    let rt = global().runtime.take();
    if let Some(rt) = rt {
        py.detach(|| rt.shutdown_timeout(Duration::from_secs(2)));
    }
}

#[pyfunction]
fn is_initialized() -> bool {
    global().system.is_some()
}

#[pyfunction]
fn local_addr() -> PyResult<Option<String>> {
    Ok(system()?.local_addr().map(|a| a.to_string()))
}

#[pyfunction]
fn advertised_addr() -> PyResult<Option<String>> {
    Ok(system()?.advertised_addr())
}

#[pyfunction]
fn members(py: Python<'_>) -> PyResult<Py<PyList>> {
    let list = PyList::empty(py);
    for m in system()?.members() {
        let d = PyDict::new(py);
        d.set_item("addr", m.addr.to_string())?;
        d.set_item("node", format!("{:?}", m.node))?;
        d.set_item("is_self", m.is_self)?;
        list.append(d)?;
    }
    Ok(list.unbind())
}

#[pyfunction]
fn instances(py: Python<'_>, name: &str) -> PyResult<Py<PyList>> {
    let list = PyList::empty(py);
    for i in system()?.instances(name) {
        let d = PyDict::new(py);
        d.set_item("addr", i.addr.to_string())?;
        d.set_item("actor", i.actor)?;
        d.set_item("type_name", &i.type_name)?;
        d.set_item("is_local", i.is_local)?;
        list.append(d)?;
    }
    Ok(list.unbind())
}

#[pyfunction]
fn names() -> PyResult<Vec<String>> {
    Ok(system()?.names())
}

// ---------------------------------------------------------------------------------------------
// The bridge: one per asyncio event loop

enum Event {
    /// A call finished.
    Done(u64, Result<Value, Error>),
    /// A call that yields an object finished (a resolved ref, an opened stream).
    Obj(u64, Result<Obj, Error>),
    /// A batch of stream items; `end`: the stream is over (with an error or not).
    Items(u64, Vec<Value>, Option<Option<Error>>),
    /// A call for a Python actor of this loop.
    Incoming(u64, HostedCall),
    /// A Python actor of this loop was stopped by the runtime (from a peer, or a Rust caller).
    HostStopped(u64),
    /// A Python actor's `def` calls need a worker to drain them (no worker was waiting).
    Drain(u64),
}

enum Obj {
    Ref(DynRef),
    Stream(ValueStream),
}

struct BridgeInner {
    queue: Mutex<Vec<Event>>,
    pending: AtomicBool,
    wake: UnixStream,
}

impl BridgeInner {
    fn push(&self, event: Event) {
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let was_empty = q.is_empty();
            q.push(event);
            self.pending.store(true, Ordering::Release);
            was_empty
        };
        if was_empty {
            // Non-blocking; a full socket buffer already holds a pending wake-up.
            let _ = (&self.wake).write(&[1]);
        }
    }
}

/// The queue between Pulsing's threads and one asyncio event loop.
#[pyclass(module = "pulsing._native")]
struct Bridge {
    inner: Arc<BridgeInner>,
    read: UnixStream,
}

#[pymethods]
impl Bridge {
    #[new]
    fn new() -> PyResult<Self> {
        let (read, wake) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        wake.set_nonblocking(true)?;
        Ok(Bridge {
            inner: Arc::new(BridgeInner {
                queue: Mutex::new(Vec::new()),
                pending: Default::default(),
                wake,
            }),
            read,
        })
    }

    /// Waits up to `micros` (GIL released, spinning) for an event; true if one is pending.
    fn hold(&self, py: Python<'_>, micros: u64) -> bool {
        let inner = &self.inner;
        py.detach(|| {
            crate::handoff::spin_until(Duration::from_micros(micros), || {
                inner.pending.load(Ordering::Acquire)
            })
        })
    }

    /// The file descriptor the loop watches.
    fn fileno(&self) -> i32 {
        self.read.as_raw_fd()
    }

    /// Takes every pending event, as tuples:
    /// `(0, token, ok, value_or_error)`, `(1, token, ok, obj_or_error)`,
    /// `(2, token, items, ended, error_or_None)`, `(3, host, method, args, kwargs, reply, stream)`,
    /// `(4, host)` (the runtime stopped that actor), `(5, host)` (that actor's `def` calls need
    /// a worker).
    fn take(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        let mut buf = [0u8; 256];
        while let Ok(n) = (&self.read).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
        let events = {
            let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            self.inner.pending.store(false, Ordering::Release);
            std::mem::take(&mut *q)
        };
        let out = PyList::empty(py);
        for event in events {
            let tuple = match event {
                Event::Done(token, result) => match result {
                    Ok(v) => match to_py(py, v) {
                        Ok(obj) => (0, token, true, obj).into_pyobject(py)?.into_any(),
                        Err(e) => {
                            let err = error_tuple(py, &Error::Codec(e.to_string()))?;
                            (0, token, false, err).into_pyobject(py)?.into_any()
                        }
                    },
                    Err(e) => (0, token, false, error_tuple(py, &e)?)
                        .into_pyobject(py)?
                        .into_any(),
                },
                Event::Obj(token, result) => match result {
                    Ok(Obj::Ref(r)) => {
                        let obj = Py::new(py, PyDynRef { inner: r })?;
                        (1, token, true, obj).into_pyobject(py)?.into_any()
                    }
                    Ok(Obj::Stream(s)) => {
                        let obj = Py::new(
                            py,
                            PyStream {
                                inner: Arc::new(StreamState::new(s)),
                            },
                        )?;
                        (1, token, true, obj).into_pyobject(py)?.into_any()
                    }
                    Err(e) => (1, token, false, error_tuple(py, &e)?)
                        .into_pyobject(py)?
                        .into_any(),
                },
                Event::Items(token, items, end) => {
                    let list = PyList::empty(py);
                    let mut failure = None;
                    for item in items {
                        match to_py(py, item) {
                            Ok(obj) => list.append(obj)?,
                            Err(e) => {
                                failure = Some(Error::Codec(e.to_string()));
                                break;
                            }
                        }
                    }
                    let (ended, err) = match (failure, end) {
                        (Some(e), _) => (true, Some(e)),
                        (None, Some(e)) => (true, e),
                        (None, None) => (false, None),
                    };
                    let err = match err {
                        Some(e) => error_tuple(py, &e)?,
                        None => py.None(),
                    };
                    (2, token, list, ended, err).into_pyobject(py)?.into_any()
                }
                Event::HostStopped(host) => (4, host).into_pyobject(py)?.into_any(),
                Event::Incoming(host, call) => match call_parts(py, call)? {
                    Some((method, args, kwargs, reply, stream)) => {
                        (3, host, method, args, kwargs, reply, stream)
                            .into_pyobject(py)?
                            .into_any()
                    }
                    None => continue,
                },
                Event::Drain(host) => (5, host).into_pyobject(py)?.into_any(),
            };
            out.append(tuple)?;
        }
        Ok(out.unbind())
    }
}

/// A call through the runtime as Python values: `(method, args, kwargs, reply, stream)`; None
/// if its arguments do not convert (then it is already answered with the error).
#[allow(clippy::type_complexity)]
pub(crate) fn call_parts<'py>(
    py: Python<'py>,
    call: HostedCall,
) -> PyResult<
    Option<(
        String,
        Bound<'py, PyTuple>,
        Bound<'py, PyDict>,
        Py<PyAny>,
        bool,
    )>,
> {
    let HostedCall {
        method,
        args,
        reply,
    } = call;
    let positional = PyList::empty(py);
    let kwargs = PyDict::new(py);
    let mut bad = None;
    for a in args.positional {
        match to_py(py, a) {
            Ok(o) => positional.append(o)?,
            Err(e) => bad = Some(e.to_string()),
        }
    }
    for (k, v) in args.keyword {
        match to_py(py, v) {
            Ok(o) => kwargs.set_item(k, o)?,
            Err(e) => bad = Some(e.to_string()),
        }
    }
    if let Some(reason) = bad {
        reply.fail(Error::Codec(format!("arguments of `{method}`: {reason}")));
        return Ok(None);
    }
    let stream = matches!(reply, HostedReply::Stream(_));
    let reply: Py<PyAny> = match reply {
        HostedReply::Call(r) => Py::new(py, PyReply { inner: Some(r) })?.into_any(),
        HostedReply::Stream(s) => Py::new(
            py,
            PySink {
                inner: Some(s),
                watcher: None,
            },
        )?
        .into_any(),
    };
    let args = PyTuple::new(py, positional.iter())?;
    Ok(Some((method, args, kwargs, reply, stream)))
}

/// Starts `work` on this thread and lets the runtime finish it; posts its result to `bridge`
/// under `token`. The first step runs here, so a call's request is queued before this returns:
/// calls leave in the order they were made (a task per call could start in any order).
fn spawn_done<F>(bridge: &Bridge, token: u64, work: F) -> PyResult<()>
where
    F: std::future::Future<Output = Result<Value, Error>> + Send + 'static,
{
    let inner = bridge.inner.clone();
    let handle = handle()?;
    let mut work = Box::pin(work);
    let first = {
        let _runtime = handle.enter();
        // The task below polls it again at once, with a waker of its own.
        work.as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    };
    match first {
        std::task::Poll::Ready(result) => inner.push(Event::Done(token, result)),
        std::task::Poll::Pending => {
            handle.spawn(async move {
                let result = work.await;
                inner.push(Event::Done(token, result));
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Resolving and calling actors by name

/// Resolves `name` (waiting up to `timeout` seconds if given); posts a `DynRef` to the bridge.
#[pyfunction]
#[pyo3(signature = (bridge, token, name, timeout=None))]
fn resolve(bridge: &Bridge, token: u64, name: String, timeout: Option<f64>) -> PyResult<()> {
    let system = system()?;
    let inner = bridge.inner.clone();
    let timeout = timeout.map(seconds).transpose()?;
    handle()?.spawn(async move {
        let result = match timeout {
            Some(t) => system.resolve_dyn_wait(&name, t).await,
            None => system.resolve_dyn(&name).await,
        };
        inner.push(Event::Obj(token, result.map(Obj::Ref)));
    });
    Ok(())
}

/// An untyped handle to any actor (local or remote, Rust or Python): by-name calls.
#[pyclass(module = "pulsing._native", name = "DynRef")]
struct PyDynRef {
    inner: DynRef,
}

#[pymethods]
impl PyDynRef {
    #[getter]
    fn type_name(&self) -> String {
        self.inner.type_name().to_owned()
    }

    #[getter]
    fn name(&self) -> Option<String> {
        self.inner.name().map(str::to_owned)
    }

    fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    fn stop(&self) -> PyResult<()> {
        let _guard = handle()?.enter();
        self.inner.stop();
        Ok(())
    }

    /// The interface of an actor in this process, as a `Value` map (`None` for a remote one).
    fn local_interface(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.inner.interface() {
            Some(iface) => {
                let v = pulsing::value::to_value(iface)
                    .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
                Ok(Some(to_py(py, v)?))
            }
            None => Ok(None),
        }
    }

    /// Calls `method`; posts the answer to the bridge.
    #[pyo3(signature = (bridge, token, method, args, kwargs=None, timeout=None))]
    fn call(
        &self,
        bridge: &Bridge,
        token: u64,
        method: String,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let timeout = timeout.map(seconds).transpose()?;
        let args = to_args(args, kwargs)?;
        let target = self.inner.clone();
        spawn_done(bridge, token, async move {
            let call = target.call(method, args);
            match timeout {
                Some(t) => call.timeout(t).await,
                None => call.await,
            }
        })
    }

    /// Opens the stream of `method`; posts a `Stream` to the bridge.
    #[pyo3(signature = (bridge, token, method, args, kwargs=None))]
    fn stream(
        &self,
        bridge: &Bridge,
        token: u64,
        method: String,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let args = to_args(args, kwargs)?;
        let target = self.inner.clone();
        let inner = bridge.inner.clone();
        handle()?.spawn(async move {
            let result = target.stream(method, args).await;
            inner.push(Event::Obj(token, result.map(Obj::Stream)));
        });
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.inner)
    }
}

/// The consumer side of a stream: fetches items in batches.
#[pyclass(module = "pulsing._native", name = "Stream")]
struct PyStream {
    inner: Arc<StreamState>,
}

struct StreamState {
    stream: tokio::sync::Mutex<Option<ValueStream>>,
    /// Set (and notified) by `close`: a fetch waiting for an item gives up and drops the stream.
    closed: AtomicBool,
    close: tokio::sync::Notify,
}

impl StreamState {
    fn new(stream: ValueStream) -> Self {
        StreamState {
            stream: tokio::sync::Mutex::new(Some(stream)),
            closed: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
        }
    }

    /// Stops the stream: the producer is cancelled (by dropping it) now or when a pending fetch
    /// notices.
    fn close(self: &Arc<Self>) {
        self.closed.store(true, Ordering::Release);
        self.close.notify_one();
        if let Ok(mut guard) = self.stream.try_lock() {
            guard.take();
        }
    }
}

#[pymethods]
impl PyStream {
    /// Waits for at least one item, then takes every ready one (up to `max`); posts the batch.
    fn next_batch(&self, bridge: &Bridge, token: u64, max: usize) -> PyResult<()> {
        let state = self.inner.clone();
        let inner = bridge.inner.clone();
        handle()?.spawn(async move {
            let mut guard = state.stream.lock().await;
            let closed = state.closed.load(Ordering::Acquire);
            let Some(s) = guard.as_mut().filter(|_| !closed) else {
                guard.take();
                inner.push(Event::Items(token, Vec::new(), Some(None)));
                return;
            };
            let first = tokio::select! {
                next = s.next() => Some(next),
                () = state.close.notified() => None,
            };
            let Some(mut next) = first else {
                guard.take();
                inner.push(Event::Items(token, Vec::new(), Some(None)));
                return;
            };
            let mut items = Vec::new();
            let mut end = None;
            loop {
                match next {
                    Some(Ok(v)) => items.push(v),
                    Some(Err(e)) => {
                        end = Some(Some(e));
                        break;
                    }
                    None => {
                        end = Some(None);
                        break;
                    }
                }
                if items.len() >= max {
                    break;
                }
                match s.next().now_or_never() {
                    Some(more) => next = more,
                    None => break,
                }
            }
            if end.is_some() {
                *guard = None;
            }
            inner.push(Event::Items(token, items, end));
        });
        Ok(())
    }

    /// Stops the stream (the producer is cancelled).
    fn close(&self) {
        self.inner.close();
    }
}

impl Drop for PyStream {
    fn drop(&mut self) {
        self.inner.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Python actors, hosted in the runtime

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
}

impl Host for PyHost {
    fn dispatch(&self, call: HostedCall) {
        if let Some(direct) = &self.direct {
            if matches!(call.reply, HostedReply::Call(_)) && direct.methods.contains(&call.method) {
                if direct.calls.push_remote(call) {
                    // Nobody drains this actor's queue: a waiting worker, else the event loop
                    // (which can start one).
                    if !direct.pool.offer_drain(self.id) {
                        self.bridge.push(Event::Drain(self.id));
                    }
                }
                return;
            }
        }
        self.bridge.push(Event::Incoming(self.id, call));
    }

    fn stopped(&self) {
        self.bridge.push(Event::HostStopped(self.id));
    }
}

/// Registers Python actor `host` (of `bridge`'s loop) under `name`, with its class's
/// interface `(type_name, [(method, [params], stream, is_async, doc)])`. Calls of the methods
/// in `direct` (plain `def` methods of an actor that is not serial) go straight into `queue`,
/// drained by `pool`'s workers.
#[pyfunction]
#[pyo3(signature = (bridge, host, name, type_name, methods, direct=None))]
#[allow(clippy::too_many_arguments)]
fn spawn_hosted(
    py: Python<'_>,
    bridge: &Bridge,
    host: u64,
    name: String,
    type_name: String,
    methods: Vec<(String, Vec<String>, bool, bool, String)>,
    direct: Option<(
        Vec<String>,
        PyRef<'_, handoff::HostQueue>,
        PyRef<'_, handoff::JobQueue>,
    )>,
) -> PyResult<PyDynRef> {
    let system = system()?;
    let handle = handle()?;
    let iface = interface_for(&type_name, methods);
    let direct = direct.map(|(methods, queue, pool)| Direct {
        methods: methods.into_iter().collect(),
        calls: queue.shared(),
        pool: pool.shared(),
    });
    let host = Arc::new(PyHost {
        bridge: bridge.inner.clone(),
        id: host,
        direct,
    });
    let r = py
        .detach(|| {
            handle.block_on(hosted::spawn(
                &system,
                SpawnOptions::new().name(name),
                iface,
                host,
            ))
        })
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

/// The reply slot of one incoming call.
#[pyclass(module = "pulsing._native", name = "Reply")]
struct PyReply {
    inner: Option<Reply<Value>>,
}

#[pymethods]
impl PyReply {
    fn is_abandoned(&self) -> bool {
        self.inner.as_ref().is_none_or(|r| r.is_abandoned())
    }

    /// Answers with `value` (a conversion failure answers with a decode error).
    fn send(&mut self, value: &Bound<'_, PyAny>) {
        if let Some(reply) = self.inner.take() {
            reply.send(to_value(value).map_err(|e| Error::Codec(e.to_string())));
        }
    }

    /// Answers with an exception raised by the actor.
    fn raised(
        &mut self,
        actor: String,
        method: String,
        kind: String,
        message: String,
        traceback: String,
    ) {
        if let Some(reply) = self.inner.take() {
            reply.send(Err(Error::Raised {
                actor,
                method,
                kind,
                message,
                traceback,
            }));
        }
    }

    /// Answers that the actor has no such method.
    fn unknown(&mut self, actor: String, method: String, available: String) {
        if let Some(reply) = self.inner.take() {
            reply.send(Err(Error::UnknownMethod {
                actor,
                method,
                available,
            }));
        }
    }

    /// Answers that the arguments (or the kind of call) do not fit the method.
    fn bad_arguments(&mut self, actor: String, method: String, signature: String, reason: String) {
        if let Some(reply) = self.inner.take() {
            reply.send(Err(Error::BadArguments {
                actor,
                method,
                signature,
                reason,
            }));
        }
    }

    /// Answers that the actor has stopped.
    fn stopped(&mut self, actor: String) {
        if let Some(reply) = self.inner.take() {
            reply.send(Err(Error::Stopped { actor }));
        }
    }
}

/// The producer side of a stream served by a Python actor.
#[pyclass(module = "pulsing._native", name = "Sink")]
struct PySink {
    inner: Option<StreamSink>,
    watcher: Option<tokio::task::AbortHandle>,
}

impl PySink {
    fn finish(&mut self) -> Option<StreamSink> {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        self.inner.take()
    }
}

impl Drop for PySink {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }
}

#[pymethods]
impl PySink {
    fn open(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.open())
    }

    /// 0: sent, 1: the buffer is full (wait with `ready`, then send again), 2: the consumer left.
    fn try_send(&self, item: &Bound<'_, PyAny>) -> PyResult<u8> {
        let Some(sink) = &self.inner else {
            return Ok(2);
        };
        let value = to_value(item)?;
        Ok(match sink.try_send(value) {
            SinkSend::Sent => 0,
            SinkSend::Full(_) => 1,
            SinkSend::Closed => 2,
        })
    }

    /// Posts `True` to the bridge once there is room (`False` if the consumer left).
    fn ready(&self, bridge: &Bridge, token: u64) -> PyResult<()> {
        let sink = self.inner.clone();
        spawn_done(bridge, token, async move {
            Ok(Value::Bool(match sink {
                Some(s) => s.ready().await,
                None => false,
            }))
        })
    }

    /// Posts `None` to the bridge once the consumer has gone (until the stream ends here).
    fn watch_closed(&mut self, bridge: &Bridge, token: u64) -> PyResult<()> {
        let Some(sink) = self.inner.clone() else {
            return Ok(());
        };
        let inner = bridge.inner.clone();
        let task = handle()?.spawn(async move {
            sink.closed().await;
            inner.push(Event::Done(token, Ok(Value::Null)));
        });
        self.watcher = Some(task.abort_handle());
        Ok(())
    }

    fn end(&mut self) -> PyResult<()> {
        if let Some(sink) = self.finish() {
            handle()?.spawn(sink.end());
        }
        Ok(())
    }

    fn raised(
        &mut self,
        actor: String,
        method: String,
        kind: String,
        message: String,
        traceback: String,
    ) -> PyResult<()> {
        if let Some(sink) = self.finish() {
            handle()?.spawn(sink.fail(Error::Raised {
                actor,
                method,
                kind,
                message,
                traceback,
            }));
        }
        Ok(())
    }

    fn bad_arguments(
        &mut self,
        actor: String,
        method: String,
        signature: String,
        reason: String,
    ) -> PyResult<()> {
        if let Some(sink) = self.finish() {
            handle()?.spawn(sink.fail(Error::BadArguments {
                actor,
                method,
                signature,
                reason,
            }));
        }
        Ok(())
    }

    fn unknown(&mut self, actor: String, method: String, available: String) -> PyResult<()> {
        if let Some(sink) = self.finish() {
            handle()?.spawn(sink.fail(Error::UnknownMethod {
                actor,
                method,
                available,
            }));
        }
        Ok(())
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "PulsingNativeError",
        m.py().get_type::<PulsingNativeError>(),
    )?;
    m.add_class::<Bridge>()?;
    m.add_class::<PyDynRef>()?;
    m.add_class::<PyStream>()?;
    m.add_class::<PyReply>()?;
    m.add_class::<PySink>()?;
    m.add_class::<handoff::JobQueue>()?;
    m.add_class::<handoff::Slot>()?;
    m.add_class::<handoff::HostQueue>()?;
    m.add_function(wrap_pyfunction!(init, m)?)?;
    m.add_function(wrap_pyfunction!(shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(finalize, m)?)?;
    m.add_function(wrap_pyfunction!(is_initialized, m)?)?;
    m.add_function(wrap_pyfunction!(malloc_tuned, m)?)?;
    m.add_function(wrap_pyfunction!(local_addr, m)?)?;
    m.add_function(wrap_pyfunction!(advertised_addr, m)?)?;
    m.add_function(wrap_pyfunction!(members, m)?)?;
    m.add_function(wrap_pyfunction!(instances, m)?)?;
    m.add_function(wrap_pyfunction!(names, m)?)?;
    m.add_function(wrap_pyfunction!(resolve, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_hosted, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
