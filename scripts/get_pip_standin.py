"""Stand-in for ansible-test's downloaded get-pip.py (ansible/ansible#77304).

ansible-test runs ``python get_pip.py [pip options] PACKAGES`` to put pip into
a fresh virtual environment.  This does the same offline: ``ensurepip`` then
``pip install`` of the requested packages, inheriting the environment so the
machine's pip configuration (index, ``cert=``) still applies.
"""

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main() -> int:
    subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], check=True)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    if args:
        subprocess.run([sys.executable, "-m", "pip", "install", *args], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
