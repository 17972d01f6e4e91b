"""Feeds: subscriptions, OPML, parsing and polling."""
