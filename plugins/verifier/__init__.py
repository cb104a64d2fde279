"""The built-in verifier plugins (``conf/verifier/`` configures them)."""
