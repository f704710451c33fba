"""Dify's Service API, the platform's own dialect: its request shapes, its answer objects and
the events of an answer, the fold of those events into one answer, their rebuild from
PostgreSQL, and its Server-Sent Events framing. No views: the doors (apps.interface) use it."""
