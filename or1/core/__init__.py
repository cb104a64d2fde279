"""The extension contract: hook points, interfaces, data types, the registry, config schemas,
and the few services every part builds on (errors, atomic writes, worker pools)."""
