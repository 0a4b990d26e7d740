"""Vendor-compatible facades over the generation machinery (OpenAI Chat Completions, …)."""
