"""`python -m worker`: patch gevent first, then run the generation worker."""

from gevent import monkey

monkey.patch_all()

from spool.settings import ConfigError, Settings  # noqa: E402
from worker.main import main  # noqa: E402 - must follow patching

if __name__ == "__main__":
    try:
        Settings.from_env()  # one clear line and a non-zero exit on bad configuration
    except ConfigError as exc:  # one line per mistake
        raise SystemExit("\n".join(f"spool worker: configuration error: {line}"
                                   for line in str(exc).splitlines())) from None
    raise SystemExit(main())
