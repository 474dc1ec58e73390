"""The one account and region every stand-in answers for (importable without moto: the build's docker
stand-in starts a process per command)."""

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
