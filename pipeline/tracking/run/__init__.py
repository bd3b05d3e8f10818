"""One run's records: its lifecycle, from open to FINISHED, FAILED or KILLED (``lifecycle``),
and what it records: per-epoch metrics (``metrics``), its config, job files and test report
(``files``), the trained model (``models``, ``classifier``), provenance facts (``provenance``),
checkpoints (``checkpoints``) and its data as MLflow datasets (``datasets``)."""
