"""Reverse ETL, leads back into the API: the rows to send (``rows``), the journal that makes a
push exactly-once (``journal``), the POSTs (``sender``) and the dlt destination that runs them
(``destination``).

Imports from: everything below it (foundation, ``options``, ``rows``, ``api``, ``warehouse``).
"""
