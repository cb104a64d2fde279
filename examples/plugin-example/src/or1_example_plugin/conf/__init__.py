"""Hydra config files of the example plugin (``<group>/<name>.yaml``), on or1's search path
through the ``or1.conf`` entry point."""
