"""PyTorch side of the port: a reference model of the official FactSeg and the weight converter.

Nothing outside this package (and the tests that skip without torch) imports torch.
"""
