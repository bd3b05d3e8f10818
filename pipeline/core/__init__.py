"""The training core, free of MLflow and of the process it runs in: data (``data``,
``tables``), models (``model``), the loop (``loop``), many jobs as one computation
(``batched``, its products in ``products``) and stopping it at a safe point (``stop``), metrics
(``evaluate``), seeding (``determinism``, ``compiler``) and the state a checkpoint holds
(``checkpoint``). It imports nothing of ``runtime`` or ``tracking``."""
