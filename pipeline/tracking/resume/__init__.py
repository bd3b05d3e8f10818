"""Resume and identity: which runs can be resumed (``state``), what makes two runs the same
experiment (``identity``), and a past run's recorded config trained again (``relaunch``)."""
