"""QPay's merchant API v2: the client, what it answers (models, codes, errors), the shared token
cache, and the client for use outside Lambda (standalone.py)."""
