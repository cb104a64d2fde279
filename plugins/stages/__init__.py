"""The built-in stages plugins (``conf/stages/`` configures them)."""
