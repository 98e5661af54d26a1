"""The adapters, named for their technology: DynamoDB (tables, the session store, the cache),
QPay (the client, its models and codes, the token cache, the client outside Lambda) and the other
AWS services (clients, EventBridge, SQS, Secrets Manager)."""
