"""The shape of rows: records as Arrow tables of the declared types (``arrow_shape``), columns
whose type changed (``drift``), hashed and excluded columns (``privacy``) and the records that
break the API's contract (``quarantine``).

Imports from: the top-level foundation only (``settings``, ``schema``, ``exceptions``,
``timestamps``, ``dlt_internals``).
"""
