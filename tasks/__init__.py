"""Thin Celery tasks: take ids, open one unit of work, call one domain function, map
errors to retry or failure, and send follow-ups only after the commit."""
