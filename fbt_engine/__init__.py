"""fbt's engine: everything that trains, measures and stores. Never imports textual."""

__version__ = "0.1.0"
