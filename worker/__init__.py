"""claimwire's engine: settings, database, Celery app, CLI and the domain modules."""
