"""Data shapes only: SQLModel tables and pydantic models. No I/O."""
