"""The preview tier: text -> FACS AU targets -> an Emotion Mapper trained against the geometric AU
critic -> edited expression coefficients; rasterised renders. Runs on CPU out of the box."""
