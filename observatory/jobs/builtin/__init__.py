"""Built-in job types, one module each; every module here is imported by the registry."""
