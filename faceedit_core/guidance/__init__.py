"""Expression guidance: text -> action units and the geometric AU critic (preview tier)."""
