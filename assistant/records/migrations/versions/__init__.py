"""The revisions, oldest first: ``0001`` the feedback table, ``0002`` the events table."""

__all__: list[str] = []
