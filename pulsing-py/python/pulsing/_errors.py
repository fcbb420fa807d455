"""The exceptions of Pulsing: every failure of a call is a ``PulsingError``."""

from __future__ import annotations

from typing import Any


class PulsingError(Exception):
    """Base class of every error raised by Pulsing."""


class PulsingActorError(PulsingError):
    """The actor's method raised (or, for a Rust actor, panicked).

    ``type_name`` is the original exception's type name, ``message`` its message and
    ``remote_traceback`` the traceback text where it was raised. The actor keeps serving.
    """

    def __init__(
        self,
        message: str,
        *,
        type_name: str = "Exception",
        remote_traceback: str = "",
        actor: str = "",
        method: str = "",
    ) -> None:
        super().__init__(f"{actor}.{method}() raised {type_name}: {message}" if actor else f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        self.actor = actor
        self.method = method

    def __str__(self) -> str:
        text = super().__str__()
        if self.remote_traceback:
            text += "\n\nRemote traceback:\n" + self.remote_traceback.rstrip()
        return text


class PulsingTimeoutError(PulsingError, TimeoutError):
    """A call (or a resolve) did not complete before its deadline."""


class PulsingNotFoundError(PulsingError, LookupError):
    """No actor is registered under the name (or none appeared before the resolve timeout)."""


class PulsingTransportError(PulsingError, ConnectionError):
    """A node could not be reached, refused the handshake, or the connection broke."""


class PulsingDecodeError(PulsingError, ValueError):
    """A value could not be converted to or from its wire form."""


class PulsingPickleError(PulsingDecodeError):
    """A value needs pickle (it is not plain data) but this process has no cluster secret.

    Unpickling runs code, so pickled objects cross processes only between nodes that proved a
    shared secret: ``pul.init(..., secret=...)``. Plain values (None, bool, int, float, str,
    bytes, list, tuple, dict) always travel; calls within one process never pickle.
    """


class PulsingStoppedError(PulsingError):
    """The actor (or the whole system) has stopped."""


class PulsingUnknownMethodError(PulsingError, AttributeError):
    """The actor has no such (public) method."""


class PulsingBadArgumentsError(PulsingError, TypeError):
    """The arguments do not fit the method's signature (names the parameter at fault)."""


class PulsingBusyError(PulsingError):
    """The actor's mailbox or the node's room for calls is full: the call was refused at once,
    not queued. Retry later (a Pulsing caller waits for room itself and rarely sees this)."""


class PulsingNameTakenError(PulsingError):
    """The name is already bound to another actor."""


class PulsingTypeMismatchError(PulsingError, TypeError):
    """The name is bound to an actor of another type than the one asked for."""


def from_native(info: Any) -> PulsingError:
    """Builds the right exception from the native ``(kind, message, fields)`` tuple."""
    if isinstance(info, BaseException):
        info = info.args if len(info.args) == 3 else info.args[0]
    kind, message, fields = info
    if kind in ("Raised", "Panicked"):
        return PulsingActorError(
            fields.get("message", message),
            type_name=fields.get("type_name", "Exception"),
            remote_traceback=fields.get("traceback", ""),
            actor=fields.get("actor", ""),
            method=fields.get("method", ""),
        )
    cls = {
        "Timeout": PulsingTimeoutError,
        "ResolveTimeout": PulsingNotFoundError,
        "NotFound": PulsingNotFoundError,
        "Unreachable": PulsingTransportError,
        "Refused": PulsingTransportError,
        "PeerLost": PulsingTransportError,
        "Codec": PulsingDecodeError,
        "Stopped": PulsingStoppedError,
        "SystemShutdown": PulsingStoppedError,
        "UnknownMethod": PulsingUnknownMethodError,
        "BadArguments": PulsingBadArgumentsError,
        "NameTaken": PulsingNameTakenError,
        "TypeMismatch": PulsingTypeMismatchError,
        "MailboxFull": PulsingBusyError,
        "Busy": PulsingBusyError,
    }.get(kind, PulsingError)
    err = cls(message)
    err.kind = kind  # type: ignore[attr-defined]
    err.fields = dict(fields)  # type: ignore[attr-defined]
    return err
