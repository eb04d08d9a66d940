"""One runner per published figure/table, plus the demo. Each module registers a CLI subcommand."""
