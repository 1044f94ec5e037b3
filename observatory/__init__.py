"""The Distributed Task Observatory: the hub that contracts, Serve apps, actors and the CLI share."""

__version__ = "0.1.0"
