"""What a process running a stage deals with: the Hydra job it runs in (``job``), the console
(``console``) and signals (``interrupts``)."""
