"""A stable import path for names that pickled data refers to.

A proxy of a named actor pickles as a call of ``pulsing._core._revive_proxy`` (the module that held
the whole Python side before it was split by role); keeping that path lets pickles travel
between processes of this and earlier versions alike. The code lives in ``_proxy``.
"""

from ._proxy import _revive_proxy

__all__ = ["_revive_proxy"]
