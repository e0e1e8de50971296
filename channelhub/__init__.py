"""The composition root: builds the hub from settings and channels, serves it, and runs the CLI."""
