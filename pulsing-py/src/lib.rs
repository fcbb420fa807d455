//! `pulsing._native`: the Rust half of the Python package.
//!
//! This file only declares the module; the logic lives in one module per job:
//!
//! - [`runtime`]: the tokio runtime and the `ActorSystem` of the process (init, shutdown, the
//!   cluster view), and the native error type.
//! - [`events`]: what crosses from the runtime's threads to an event loop ([`events::Event`],
//!   told apart in Python by [`events::EventKind`]).
//! - [`bridge`]: the per-loop [`bridge::Bridge`] (a queue and a socket-pair wake-up).
//! - [`client`]: calling actors by name (`DynRef`, remote streams, `resolve`).
//! - [`host`]: Python actors hosted in the runtime (the `Host` impl and `spawn_hosted`).
//! - [`reply`]: the answer handed to Python with an incoming call (`Reply`); [`sink`]: the
//!   producer side of a stream a Python actor serves (`Sink`, batched).
//! - [`convert`] (Python <-> `Value`, errors as tuples), [`handoff`] (parked hand-offs
//!   with the `def` workers), [`spin`] (whether a waiter may spin first), [`malloc`] (glibc
//!   tuning for large messages).
//!
//! The rule that holds them together: no Rust thread ever holds or touches a Python object (see
//! [`bridge`]), so the interpreter can finalize while tokio threads still run.

#![allow(unreachable_pub)]

mod bridge;
mod client;
mod convert;
mod deferred;
mod drive;
mod events;
mod handoff;
mod host;
mod landing;
mod malloc;
mod reply;
mod runtime;
mod sink;
mod spin;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "PulsingNativeError",
        m.py().get_type::<runtime::PulsingNativeError>(),
    )?;
    m.add_class::<events::EventKind>()?;
    m.add_class::<bridge::Bridge>()?;
    m.add_class::<client::PyDynRef>()?;
    m.add_class::<client::PyStream>()?;
    m.add_class::<reply::PyReply>()?;
    m.add_class::<sink::PySink>()?;
    m.add_class::<sink::SendResult>()?;
    m.add_class::<handoff::JobQueue>()?;
    m.add_class::<handoff::Slot>()?;
    m.add_class::<handoff::HostQueue>()?;
    m.add_function(wrap_pyfunction!(runtime::init, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::finalize, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::is_initialized, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::malloc_tuned, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::local_addr, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::advertised_addr, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::members, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::instances, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::names, m)?)?;
    m.add_function(wrap_pyfunction!(client::resolve, m)?)?;
    m.add_function(wrap_pyfunction!(host::spawn_hosted, m)?)?;
    m.add_function(wrap_pyfunction!(spin::spin_allowed, m)?)?;
    m.add_function(wrap_pyfunction!(landing::landed_count, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
