"""Vendor-compatible facades over the generation machinery (OpenAI Chat Completions, the
Vercel AI SDK's UI message stream, …); `streaming` and `wire` are what they share."""
