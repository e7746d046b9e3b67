"""Services: the rules of the product (validation, quotas, versions, transactions)."""
