"""The warehouse side: which warehouse a run loads and how (``target``), what it holds of a
table (``loaded``, ``readback``, ``lake``), the rows a full scan did not see (``deletions``), the
run's check of itself against the API's count (``verdicts``), history versions (``versions``),
``rackwave_runs`` (``runs_table``), ``rackwave_quarantine`` (``quarantine_table``) and the repairs
before a resumed load (``recovery``).

Imports from: the top-level foundation, ``options``, ``rows``, ``api`` and ``read``.
"""
