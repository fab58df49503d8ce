"""The read path: what a run reads (``cursor``), every page of a pass (``paging``), what each
page proves about the list (``coverage``), the ranges read again (``rereads``), one pass over a
resource (``scan``), the full scans asked for (``scan_requests``) and the pages counted for the
progress line (``progress``).

Imports from: the top-level foundation, ``options``, ``rows`` and ``api``.
"""
