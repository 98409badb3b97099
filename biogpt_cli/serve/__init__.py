"""`biogpt serve`: BioGPT behind an OpenAI-compatible HTTP server, with continuous batching across
requests (engine.py: the scheduler that owns the model; the HTTP app and the command beside it)."""
