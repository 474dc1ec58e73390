"""gunicorn settings for the container; command-line flags (e.g. --bind) override them."""

import os
import sys

# All interfaces: inside the container the ALB reaches the task on its ENI address.
bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# The root filesystem is read-only; the task mounts a scratch volume on /tmp.
worker_tmp_dir = os.environ.get("TMPDIR", "/tmp")  # noqa: S108
accesslog = "-"
graceful_timeout = 10


def on_starting(server: object) -> None:
    """Refuse to start on a bad setting with one clear line, before any worker boots."""
    # Imported here: gunicorn puts the app directory on sys.path only after reading this file.
    from app import ConfigError, FaultConfig  # noqa: PLC0415

    try:
        FaultConfig.from_env(os.environ)
    except ConfigError as err:
        sys.exit(f"sample-app cannot start: {err}")
