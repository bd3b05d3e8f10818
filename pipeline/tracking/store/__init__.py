"""Where runs are stored and how to reach them: the tracking URI, opening or creating the store
and finding a run in it (``access``), a PostgreSQL store checked first (``postgres``), a URI's
password moved to ``PGPASSWORD`` (``password``), secrets masked in every text written
(``redact``), and the MLflow UI's addresses (``serving``)."""
