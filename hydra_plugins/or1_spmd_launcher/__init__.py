"""or1's Hydra launcher plugin: sweeps whose every job is one SPMD launch (spmd_launcher)."""
