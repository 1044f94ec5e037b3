"""Ray actors: job processors, event aggregators, and the supervisor that keeps them alive."""
