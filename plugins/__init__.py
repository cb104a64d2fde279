"""or1's default plugins, one sub-package per plugin. Plugins depend on `or1` only, never on each other."""
