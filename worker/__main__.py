"""`python -m worker`: patch gevent first, then run the generation worker."""

from gevent import monkey

monkey.patch_all()

from worker.main import main  # noqa: E402 - must follow patching

if __name__ == "__main__":
    raise SystemExit(main())
