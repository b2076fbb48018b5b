"""Compute kernels for MTG-Net inference: PyTorch reference and (on CUDA) a fused Triton kernel.

Nothing here is imported by ``import mtgfast``; torch and triton load on first use.
"""
