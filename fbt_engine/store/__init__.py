"""The run store (SPEC §5): run folders, events files, the SQLite index. No torch here."""
