"""Shared business logic of the QPay payment functions: settings, QPay client, token cache,
repositories, the payments service and the single mapping of errors to HTTP."""
