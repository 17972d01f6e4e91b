"""The core: settings (the only reader of the environment), the database and its units
of work, logging, and the resources a process shares (HTTP client, host limiter,
archive)."""
