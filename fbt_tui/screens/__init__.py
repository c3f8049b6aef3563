"""One screen per file: the three modes, the compare view, and the modal dialogs."""
