"""The built-in learner plugins (``conf/learner/`` configures them)."""
