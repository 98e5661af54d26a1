import os

# Lambda sets these before any import; so must the tests, since Powertools reads them at import.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "qpay-payments")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "QPayPayments")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
