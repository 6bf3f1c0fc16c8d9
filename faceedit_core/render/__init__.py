"""Rendering: rasteriser (own PyTorch one, nvdiffrast on CUDA), EG3D cameras, preview renderer."""
