//! The tokio runtime and the one `ActorSystem` of the process, and the functions Python calls
//! to start, inspect and stop them.
//!
//! The runtime starts on first use. It is a current-thread runtime, driven by the asyncio loops
//! while they wait and by a driver thread otherwise (`drive.rs`, issue #15). With
//! `PULSING_DRIVE=off` it is a multi-thread runtime with one worker (`PULSING_WORKERS`
//! overrides it, for measurements): one, because with two, tokio hands each woken task to the
//! other worker — 7 context switches per call in each process against 3.7 with one worker
//! (docs/python.md). `shutdown` stops the system; `finalize` (run by Python's `atexit` hook)
//! also stops the driver thread and shuts the runtime down, for good, before the interpreter
//! finalizes (if a loop thread still holds the runtime, it is dropped when that thread lets
//! go, and nobody drives it meanwhile): since no Rust thread holds a Python object (see
//! `bridge.rs`), nothing touches Python after that. This avoids the interpreter-exit crash of
//! pyo3-async-runtimes' helpers (design notes §6).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pulsing::{ActorSystem, Error};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::convert::error_tuple;
use crate::drive::Driving;
use crate::malloc;

struct Global {
    runtime: Option<Arc<tokio::runtime::Runtime>>,
    /// Who drives the runtime (`drive.rs`); `None` with `PULSING_DRIVE=off`.
    driving: Option<Arc<Driving>>,
    system: Option<ActorSystem>,
}

static GLOBAL: Mutex<Global> = Mutex::new(Global {
    runtime: None,
    driving: None,
    system: None,
});

fn global() -> std::sync::MutexGuard<'static, Global> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// True unless `PULSING_DRIVE=off`: the runtime is driven by the loops that wait (`drive.rs`).
fn loop_driven() -> bool {
    !matches!(
        std::env::var("PULSING_DRIVE").as_deref(),
        Ok("off" | "0" | "no" | "false")
    )
}

/// Starts the runtime on first use; an error after the final shutdown.
fn started(g: &mut Global) -> PyResult<Arc<tokio::runtime::Runtime>> {
    if FINALIZED.load(Ordering::Acquire) {
        return Err(PyRuntimeError::new_err(
            "the Pulsing runtime has been shut down",
        ));
    }
    if let Some(rt) = &g.runtime {
        return Ok(rt.clone());
    }
    let err = |e: std::io::Error| PyRuntimeError::new_err(e.to_string());
    let rt = if loop_driven() {
        let rt = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(err)?,
        );
        g.driving = Some(Driving::start(rt.clone()).map_err(err)?);
        rt
    } else {
        let workers = std::env::var("PULSING_WORKERS")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(1);
        Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("pulsing")
                .enable_all()
                .build()
                .map_err(err)?,
        )
    };
    g.runtime = Some(rt.clone());
    Ok(rt)
}

/// The runtime's handle (started on first use); an error after the final shutdown.
pub(crate) fn handle() -> PyResult<tokio::runtime::Handle> {
    Ok(started(&mut global())?.handle().clone())
}

/// Who drives the runtime (started on first use); `None` with `PULSING_DRIVE=off`.
pub(crate) fn driving() -> PyResult<Option<Arc<Driving>>> {
    let mut g = global();
    started(&mut g)?;
    Ok(g.driving.clone())
}

/// Runs `work` to completion without the GIL, blocking this thread; it drives the runtime
/// meanwhile if nobody else does (`Driving::block_on`).
pub(crate) fn block_on<F>(py: Python<'_>, work: F) -> PyResult<F::Output>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    let (handle, driving) = {
        let mut g = global();
        (started(&mut g)?.handle().clone(), g.driving.clone())
    };
    py.detach(|| match driving {
        Some(d) => d.block_on(work),
        None => Some(handle.block_on(work)),
    })
    .ok_or_else(|| PyRuntimeError::new_err("the Pulsing runtime has been shut down"))
}

/// Seconds from Python as a `Duration` (a negative or NaN one is a `ValueError`).
pub(crate) fn seconds(t: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(t).map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!("not a valid number of seconds: {t}"))
    })
}

/// Set once the runtime is gone for good (interpreter exit): nothing starts it again.
static FINALIZED: AtomicBool = AtomicBool::new(false);

pub(crate) fn system() -> PyResult<ActorSystem> {
    global()
        .system
        .clone()
        .ok_or_else(|| PyRuntimeError::new_err("pulsing is not initialized: call pul.init() first"))
}

pub(crate) fn py_err(py: Python<'_>, e: &Error) -> PyErr {
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
#[pyo3(signature = (addr=None, seeds=Vec::new(), secret=None, call_timeout=Some(30.0), advertise=None, encrypt=true))]
pub(crate) fn init(
    py: Python<'_>,
    addr: Option<String>,
    seeds: Vec<String>,
    secret: Option<Vec<u8>>,
    call_timeout: Option<f64>,
    advertise: Option<String>,
    encrypt: bool,
) -> PyResult<()> {
    init_logging();
    malloc::tune();
    crate::landing::install();
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
    // Pickle runs code on load: only a node whose every connection proved the cluster secret
    // may exchange pickled objects (see `convert`).
    let secured = secret.is_some();
    if let Some(secret) = secret {
        builder = builder.secret(secret);
    }
    builder = builder.encryption(encrypt);
    builder = match call_timeout {
        Some(t) => builder.call_timeout(seconds(t)?),
        None => builder.no_call_timeout(),
    };
    if let Some(adv) = advertise {
        builder = builder.advertise(adv);
    }
    builder = builder.shutdown_grace(Duration::from_secs(2));
    let system = block_on(py, builder.build())?.map_err(|e| py_err(py, &e))?;
    crate::convert::allow_pickle(secured);
    global().system = Some(system);
    Ok(())
}

/// True if `init` tuned glibc's allocator for large messages (see `malloc.rs`).
#[pyfunction]
pub(crate) fn malloc_tuned() -> bool {
    malloc::tuned()
}

/// Stops every actor of the system and leaves the cluster (blocking, without the GIL).
#[pyfunction]
pub(crate) fn shutdown(py: Python<'_>) {
    let system = global().system.clone();
    if let Some(system) = system {
        // The runtime is running: it was started before the system.
        let _ = block_on(py, system.shutdown());
    }
    global().system = None;
    crate::convert::allow_pickle(false);
}

/// The last step at interpreter exit: shuts the system down, then the runtime and its threads.
#[pyfunction]
pub(crate) fn finalize(py: Python<'_>) {
    shutdown(py);
    FINALIZED.store(true, Ordering::Release);
    let (rt, driving) = {
        let mut g = global();
        (g.runtime.take(), g.driving.take())
    };
    py.detach(|| {
        // The driver thread stops and gives its reference up; a thread still driving gives
        // its own up as it returns (then the runtime is dropped there, not shut down here).
        drop(driving.and_then(|d| d.stop()));
        if let Some(rt) = rt.and_then(|rt| Arc::try_unwrap(rt).ok()) {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    });
}

#[pyfunction]
pub(crate) fn is_initialized() -> bool {
    global().system.is_some()
}

#[pyfunction]
pub(crate) fn local_addr() -> PyResult<Option<String>> {
    Ok(system()?.local_addr().map(|a| a.to_string()))
}

#[pyfunction]
pub(crate) fn advertised_addr() -> PyResult<Option<String>> {
    Ok(system()?.advertised_addr())
}

#[pyfunction]
pub(crate) fn members(py: Python<'_>) -> PyResult<Py<PyList>> {
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
pub(crate) fn instances(py: Python<'_>, name: &str) -> PyResult<Py<PyList>> {
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
pub(crate) fn names() -> PyResult<Vec<String>> {
    Ok(system()?.names())
}
