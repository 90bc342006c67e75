"""PikoBrain's plain interface, ``POST /``: text in, the brain's answer out (see routes.py)."""
