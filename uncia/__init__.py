"""uncia: field firmware for a snow-leopard monitoring network (command-line entry point)."""

__version__ = "0.1.0"
