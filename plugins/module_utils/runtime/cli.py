"""Placeholder replaced below."""


def main() -> int:
    print("berth: CLI under construction")
    return 1
