"""The `shoplake` command line: thin commands grouped by noun (stack, config, provision)."""
