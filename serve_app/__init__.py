"""Ray Serve applications: the gateway (/api), the read model (/read) and the workers (actors)."""
