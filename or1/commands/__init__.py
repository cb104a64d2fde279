"""What the command-line tools run (or1-eval, or1-data, or1-filter, or1-plot, sweeps, export,
the generated reference pages); ``or1/cli`` only parses their arguments."""
