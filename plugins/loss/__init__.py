"""The built-in loss plugins (``conf/loss/`` configures them)."""
