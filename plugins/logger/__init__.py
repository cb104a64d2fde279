"""The built-in logger plugins (``conf/logger/`` configures them)."""
