"""The built-in advantage plugins (``conf/advantage/`` configures them)."""
