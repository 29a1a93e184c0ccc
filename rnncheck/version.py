"""rnncheck's version: a module of its own, which every other module may import without a cycle."""

__version__ = "0.1.0"
