"""`agent demo`: a SYNTHETIC site on pseudo-terminals, the real daemon and a real broker."""
