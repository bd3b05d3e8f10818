"""For the commands that read runs: finding them and how they rank (``lookup``), what differs
between two (``differences``), and the Model Registry (``registry``)."""
