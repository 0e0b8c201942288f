"""Calculation helpers; the nequip/Allegro side is pure Python (no AiiDA import) in :mod:`.allegro_config`."""
