"""Turning a config into a run on its processes: checks, the model and data, the parallel
layout, resume, the memory plan."""
