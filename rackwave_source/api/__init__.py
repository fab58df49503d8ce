"""The Rackwave API: HTTP with retries and a shared 429 budget (``client``), the token exchange
(``auth``), the request rate (``throttle``), one list endpoint's pages (``endpoint``) and each
page decoded into checked Arrow rows (``decode``).

Imports from: the top-level foundation (``settings``, ``schema``, ``exceptions``,
``timestamps``, ``dlt_internals``), ``options`` and ``rows``.
"""
