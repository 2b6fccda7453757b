"""Sub-commands of `maebench`; each module exposes `register(app)`."""
