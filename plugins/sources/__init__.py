"""The built-in sources plugins (``conf/sources/`` configures them)."""
