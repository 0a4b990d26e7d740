"""Batch routes and batch upload parsing."""
