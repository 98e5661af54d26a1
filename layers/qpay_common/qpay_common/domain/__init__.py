"""The domain: the payment session and its statuses, the state machine, the scheduled jobs' work
queues, the session store port with its verbs, listing and cursor, the callback token, and the
errors a caller can tell apart. It imports only the standard library and pydantic."""
