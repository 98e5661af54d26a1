"""The use cases, one a module: creation, settlement, cancellation, queries, refunds, the
operators' actions and reports, Ebarimt, the scheduled jobs and reconcile. Each depends on ports
(domain/store.py, ports.py), never on DynamoDB, AWS or HTTP classes."""
