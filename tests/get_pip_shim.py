"""Stand-in for pip's get-pip.py bootstrap script, for `ansible-test sanity` on machines that
cannot reach ci-files.testing.ansible.com (ansible-test downloads get-pip from there to seed
its venvs). It runs the pip wheel bundled with CPython's ensurepip to install the pip version
ansible-test asked for from the package index. Named as what it is: an offline replacement
for a download, not a test double."""

import ensurepip
import glob
import os
import sys

wheel = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))[0]
sys.path.insert(0, wheel)

from pip._internal.cli.main import main  # noqa: E402  (import after sys.path set-up)

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", *args]))
