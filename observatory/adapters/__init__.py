"""Backend adapters: one module per implementation of the interfaces in `observatory.ports`."""
