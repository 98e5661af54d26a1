"""The QPay payments layer shared by every function. Its floor plan: domain/ (rules and the
session store port), usecases/ (one use case a module, on ports), adapters/ (DynamoDB, QPay, AWS),
http/ (the edge), and at the root the settings, the composition root, the one Lambda entry
wrapper, observability, the clock and the invocation's deadline."""
