"""Shared pieces of the reports people read: statistics and charts."""
