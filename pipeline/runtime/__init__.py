"""What a process running a stage deals with: the Hydra job it runs in (``job``), the console
(``console``; its text tables: ``text_table``), signals (``interrupts``), which process it is
(``process``) and the points where crash tests kill it (``failpoints``)."""
