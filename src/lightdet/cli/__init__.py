"""Console entry points: thin wrappers that compose a config and call :mod:`lightdet.api`."""
