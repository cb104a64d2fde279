"""The built-in rollout plugins (``conf/rollout/`` configures them)."""
