"""The ``fogwire`` command line. Each subcommand lives in its own module, imported only when run."""
