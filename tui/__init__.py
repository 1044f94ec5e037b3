"""The Textual TUI: `observatory tui`."""
