"""osvi-archiver: keep your own verified copy of every OSVI AI call recording."""

__version__ = "0.1.0"
