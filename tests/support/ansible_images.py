"""Images for tests that run Ansible inside berth containers.

Ansible modules need Python in the target, and ``become`` needs sudo or su:
the Debian fixture image has neither.  ``ansible_target_images()`` adds one
layer to the Debian base (built like the other recipes of support/images.py:
apt in a chroot over an overlay, cached): python3, sudo, systemd and
systemd-sysv, so the same image serves a plain container (any command) and a
booted one (``/sbin/init``).

Users of the image:

* ``root`` with the password :data:`ROOT_PASSWORD` (for ``become_method: su``);
* ``ansible`` (uid 1000, home /home/ansible, shell /bin/bash) with the
  password :data:`USER_PASSWORD`, allowed everything through sudo *with* its
  password (so the become prompt is exercised);
* ``deploy`` (uid 1001), allowed everything through sudo without a password.
"""

from . import images
from .oci import History, ImageConfig

ROOT_PASSWORD = "root-secret"
USER_PASSWORD = "ansible-secret"
USER = "ansible"
NOPASSWD_USER = "deploy"

ANSIBLE_TARGET = images.DebianRecipe(
    name="debian-ansible-target",
    packages=("python3", "sudo", "systemd", "systemd-sysv"),
    post=(
        # Each container gets its own machine id: ship the "uninitialised" empty file, like the systemd recipe.
        ": > /etc/machine-id",
        "rm -f /var/lib/dbus/machine-id",
        f"useradd --create-home --uid 1000 --shell /bin/bash {USER}",
        f"useradd --create-home --uid 1001 --shell /bin/bash {NOPASSWD_USER}",
        f"printf '%s\\n' 'root:{ROOT_PASSWORD}' '{USER}:{USER_PASSWORD}' | chpasswd",
        f"printf '%s\\n' '{USER} ALL=(ALL:ALL) ALL' '{NOPASSWD_USER} ALL=(ALL:ALL) NOPASSWD: ALL'"
        " > /etc/sudoers.d/berth-test",
        "chmod 0440 /etc/sudoers.d/berth-test",
        "rm -rf /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log",
    ),
    config=ImageConfig(
        env=[images.BASE_PATH],
        cmd=["/sbin/init"],
        stop_signal="SIGRTMIN+3",
        labels={"org.berth.fixture": "debian-ansible-target"},
    ),
    history=(
        History("apt-get install --no-install-recommends python3 sudo systemd systemd-sysv; users ansible, deploy"),
        History("STOPSIGNAL SIGRTMIN+3", empty_layer=True),
        History('CMD ["/sbin/init"]', empty_layer=True),
    ),
)


def ansible_target_images() -> images.FixtureImages:
    """Debian + python3, sudo and systemd (tag ``latest``; cached, about a minute cold)."""
    return images.debian_recipe_images(ANSIBLE_TARGET)
