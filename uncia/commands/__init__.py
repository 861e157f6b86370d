"""One module per `uncia` subcommand; each exposes ``register(subparsers)``."""
