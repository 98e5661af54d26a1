"""AWS besides DynamoDB: the environment's SDK clients, EventBridge, SQS and Secrets Manager."""
