"""Test helpers: real services (``services``, ``servers``) and results shared across files."""
