"""Configuration values: typed getters and up-front validation of the Hydra configs and of the
same dicts passed from Python, raising ``ConfigError`` with the offending key
(:mod:`dhde.config.check`). Layer 0, with ``dhde.checks`` and ``dhde.labels``: imports no other
dhde module above it."""
