"""FACS action units measured on the mesh: the geometric critic and the AU objective both tiers use."""
