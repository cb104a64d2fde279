"""The built-in entropy plugins (``conf/entropy/`` configures them)."""
