"""Command-line interface: ``mp-slam <subcommand>``."""
