"""The built-in filter plugins (``conf/filter/`` configures them)."""
