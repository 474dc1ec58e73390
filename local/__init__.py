"""The offline stand-in for the AWS side of Phoenix Pipeline, and the drill that `make demo` runs."""
