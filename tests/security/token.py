"""The API token the security tests' API runs with (its fixture sets it; tests send it)."""

TOKEN = "s3cret-token-for-tests"
