"""DynamoDB: the table models, the session store and the cache table."""
