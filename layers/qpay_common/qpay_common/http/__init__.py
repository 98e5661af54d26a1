"""The HTTP edge: the resolver every HTTP function uses, request body rules, the API's and the
operators' response models, the one mapping of errors to responses, and the checkout site."""
