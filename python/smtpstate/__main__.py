"""``python -m smtpstate``: prints the state chain, one state a line."""

from __future__ import annotations

import smtpstate


def main() -> int:
    for state in smtpstate.smtp_get_state_machine():
        print(f"{state.id:4d}  {state.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
